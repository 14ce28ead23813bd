//! cty's type conversion (`convert.Convert`) and unification
//! (`convert.UnifyUnsafe`): what `tolist`, variable types, conditionals and
//! provider schemas use.

use std::collections::{BTreeMap, BTreeSet};

use crate::num::Number;
use crate::value::{Kind, Type, Value};

/// Why a value does not convert; the text is terraform's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// Attribute or index path where it failed (`.a[0]`), empty at the top.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn err(message: impl Into<String>) -> ConvertError {
    ConvertError {
        path: String::new(),
        message: message.into(),
    }
}

fn at(e: ConvertError, step: &str) -> ConvertError {
    ConvertError {
        path: format!("{step}{}", e.path),
        message: e.message,
    }
}

fn step_key(k: &str) -> String {
    format!("[{}]", serde_json::to_string(k).unwrap_or_default())
}

/// Converts `v` to type `want` (which may contain `Dynamic`).
pub fn convert(v: &Value, want: &Type) -> Result<Value, ConvertError> {
    let out = convert_inner(v, want)?;
    Ok(out.mark(v.sensitive))
}

fn convert_inner(v: &Value, want: &Type) -> Result<Value, ConvertError> {
    if let Type::Optional(t) = want {
        return convert_inner(v, t);
    }
    if *want == Type::Dynamic {
        return Ok(v.clone());
    }
    match &v.kind {
        Kind::Null(t) => {
            if t == want || *t == Type::Dynamic || type_converts(t, want) {
                return Ok(Value::null(concrete(want)));
            }
            return Err(mismatch(want, t));
        }
        Kind::Unknown(t) => {
            if *t == Type::Dynamic || type_converts(t, want) {
                return Ok(Value::unknown(concrete_from(want, t)));
            }
            return Err(mismatch(want, t));
        }
        _ => {}
    }
    let have = v.ty();
    if have == *want {
        return Ok(v.clone());
    }
    match want {
        Type::String => match &v.kind {
            Kind::Number(n) => Ok(Value::string(n.to_string())),
            Kind::Bool(b) => Ok(Value::string(b.to_string())),
            _ => Err(mismatch(want, &have)),
        },
        Type::Number => match &v.kind {
            Kind::String(s) => Number::parse(s)
                .map(Value::number)
                .map_err(|_| err("a number is required")),
            _ => Err(mismatch(want, &have)),
        },
        Type::Bool => match &v.kind {
            Kind::String(s) if s == "true" => Ok(Value::bool(true)),
            Kind::String(s) if s == "false" => Ok(Value::bool(false)),
            Kind::String(_) => Err(err("a bool is required")),
            _ => Err(mismatch(want, &have)),
        },
        Type::List(et) | Type::Set(et) => {
            let elems: &[Value] = match &v.kind {
                Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => e,
                _ => return Err(mismatch(want, &have)),
            };
            let et = if **et == Type::Dynamic {
                let tys: Vec<Type> = elems.iter().map(Value::ty).collect();
                if tys.is_empty() {
                    match v.ty().element() {
                        Some(t) => t.clone(),
                        None => Type::Dynamic,
                    }
                } else {
                    unify(&tys).ok_or_else(|| err("all list elements must have the same type"))?
                }
            } else {
                (**et).clone()
            };
            let mut out = Vec::with_capacity(elems.len());
            for (i, e) in elems.iter().enumerate() {
                out.push(convert(e, &et).map_err(|x| at(x, &format!("[{i}]")))?);
            }
            Ok(if matches!(want, Type::Set(_)) {
                Value::set(et, out)
            } else {
                Value::list(et, out)
            })
        }
        Type::Map(et) => {
            let (Kind::Map(_, entries) | Kind::Object(entries)) = &v.kind else {
                return Err(mismatch(want, &have));
            };
            let et = if **et == Type::Dynamic {
                let tys: Vec<Type> = entries.values().map(Value::ty).collect();
                if tys.is_empty() {
                    match v.ty().element() {
                        Some(t) => t.clone(),
                        None => Type::Dynamic,
                    }
                } else {
                    unify(&tys).ok_or_else(|| err("all map elements must have the same type"))?
                }
            } else {
                (**et).clone()
            };
            let mut out = BTreeMap::new();
            for (k, e) in entries {
                out.insert(k.clone(), convert(e, &et).map_err(|x| at(x, &step_key(k)))?);
            }
            Ok(Value::map(et, out))
        }
        Type::Tuple(ets) => {
            let (Kind::List(_, elems) | Kind::Tuple(elems)) = &v.kind else {
                return Err(mismatch(want, &have));
            };
            if elems.len() != ets.len() {
                return Err(err(format!("tuple required with {} elements", ets.len())));
            }
            let out = elems
                .iter()
                .zip(ets)
                .enumerate()
                .map(|(i, (e, t))| convert(e, t).map_err(|x| at(x, &format!("[{i}]"))))
                .collect::<Result<_, _>>()?;
            Ok(Value::tuple(out))
        }
        Type::Object(attrs) => {
            let (Kind::Map(_, entries) | Kind::Object(entries)) = &v.kind else {
                return Err(mismatch(want, &have));
            };
            let mut out = BTreeMap::new();
            for (k, t) in attrs {
                match entries.get(k) {
                    Some(e) => {
                        out.insert(
                            k.clone(),
                            convert(e, t).map_err(|x| at(x, &format!(".{k}")))?,
                        );
                    }
                    None if matches!(t, Type::Optional(_)) => {
                        out.insert(k.clone(), Value::null(concrete(t)));
                    }
                    None => {
                        return Err(err(format!("attribute {k:?} is required")));
                    }
                }
            }
            if matches!(v.kind, Kind::Map(..))
                && let Some(extra) = entries.keys().find(|k| !attrs.contains_key(*k))
            {
                return Err(err(format!("unexpected attribute {extra:?}")));
            }
            Ok(Value::object(out))
        }
        Type::Dynamic | Type::Optional(_) => Ok(v.clone()),
    }
}

fn mismatch(want: &Type, have: &Type) -> ConvertError {
    let msg = match (want, have) {
        (Type::String | Type::Number | Type::Bool, _) => {
            format!("{} required", want.friendly())
        }
        (Type::List(_), _) => "list of any single type required".into(),
        (Type::Set(_), _) => "set of any single type required".into(),
        (Type::Map(_), _) => "map of any single type required".into(),
        (Type::Object(_), _) => "object required".into(),
        (Type::Tuple(_), _) => "tuple required".into(),
        _ => format!("{} required", want.friendly()),
    };
    err(msg)
}

/// The type a null or unknown of constraint `t` gets (Dynamic stays).
fn concrete(t: &Type) -> Type {
    match t {
        Type::Optional(t) => concrete(t),
        Type::List(e) => Type::list(concrete(e)),
        Type::Set(e) => Type::set(concrete(e)),
        Type::Map(e) => Type::map(concrete(e)),
        Type::Tuple(ts) => Type::Tuple(ts.iter().map(concrete).collect()),
        Type::Object(m) => Type::Object(m.iter().map(|(k, t)| (k.clone(), concrete(t))).collect()),
        t => t.clone(),
    }
}

fn concrete_from(want: &Type, have: &Type) -> Type {
    if want.has_dynamic()
        && !have.has_dynamic()
        && *have != Type::Dynamic
        && let (Type::List(w), Type::List(h))
        | (Type::Set(w), Type::Set(h))
        | (Type::Map(w), Type::Map(h)) = (want, have)
        && **w == Type::Dynamic
    {
        return match want {
            Type::List(_) => Type::list((**h).clone()),
            Type::Set(_) => Type::set((**h).clone()),
            _ => Type::map((**h).clone()),
        };
    }
    concrete(want)
}

/// Whether values of type `from` may convert to `to` (type-level check).
pub fn type_converts(from: &Type, to: &Type) -> bool {
    match (from, to) {
        (_, Type::Dynamic) | (Type::Dynamic, _) => true,
        (f, Type::Optional(t)) => type_converts(f, t),
        (a, b) if a == b => true,
        (a, b) if a.is_primitive() && b.is_primitive() => !matches!(
            (a, b),
            (Type::Number, Type::Bool) | (Type::Bool, Type::Number)
        ),
        (Type::List(a) | Type::Set(a), Type::List(b) | Type::Set(b)) => type_converts(a, b),
        (Type::Tuple(ts), Type::List(b) | Type::Set(b)) => ts.iter().all(|t| type_converts(t, b)),
        (Type::Map(a), Type::Map(b)) => type_converts(a, b),
        (Type::Object(m), Type::Map(b)) => m.values().all(|t| type_converts(t, b)),
        (Type::Object(a), Type::Object(b)) => b.iter().all(|(k, t)| match a.get(k) {
            Some(f) => type_converts(f, t),
            None => matches!(t, Type::Optional(_)),
        }),
        (Type::Map(a), Type::Object(b)) => b.values().all(|t| type_converts(a, t)),
        (Type::Tuple(a), Type::Tuple(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| type_converts(x, y))
        }
        (Type::List(a), Type::Tuple(b)) => b.iter().all(|t| type_converts(a, t)),
        _ => false,
    }
}

/// The single type all of `tys` convert to, as cty's unification finds it.
pub fn unify(tys: &[Type]) -> Option<Type> {
    let mut distinct: Vec<&Type> = Vec::new();
    for t in tys {
        if !distinct.contains(&t) {
            distinct.push(t);
        }
    }
    if distinct.is_empty() {
        return Some(Type::Dynamic);
    }
    if distinct.len() == 1 {
        return Some(distinct[0].clone());
    }
    // A dynamic type (an untyped null) converts to whatever the others unify to.
    distinct.retain(|t| **t != Type::Dynamic);
    if distinct.is_empty() {
        return Some(Type::Dynamic);
    }
    if distinct.len() == 1 {
        return Some(distinct[0].clone());
    }
    if distinct.iter().all(|t| t.is_primitive()) {
        if distinct.contains(&&Type::String) {
            return Some(Type::String);
        }
        return None;
    }
    let all = |f: fn(&Type) -> bool| distinct.iter().all(|t| f(t));
    if all(|t| matches!(t, Type::List(_) | Type::Tuple(_)))
        && distinct.iter().any(|t| matches!(t, Type::List(_)))
    {
        let mut elems = Vec::new();
        for t in &distinct {
            match t {
                Type::List(e) => elems.push((**e).clone()),
                Type::Tuple(ts) => elems.extend(ts.iter().cloned()),
                _ => {}
            }
        }
        return Some(Type::list(unify(&elems)?));
    }
    if all(|t| matches!(t, Type::Set(_))) {
        let elems: Vec<Type> = distinct
            .iter()
            .filter_map(|t| t.element().cloned())
            .collect();
        return Some(Type::set(unify(&elems)?));
    }
    if all(|t| matches!(t, Type::Tuple(_))) {
        let lens: BTreeSet<usize> = distinct
            .iter()
            .map(|t| match t {
                Type::Tuple(ts) => ts.len(),
                _ => 0,
            })
            .collect();
        if lens.len() == 1 {
            let n = *lens.iter().next()?;
            let mut out = Vec::new();
            for i in 0..n {
                let col: Vec<Type> = distinct
                    .iter()
                    .filter_map(|t| match t {
                        Type::Tuple(ts) => ts.get(i).cloned(),
                        _ => None,
                    })
                    .collect();
                out.push(unify(&col)?);
            }
            return Some(Type::Tuple(out));
        }
        // Tuples of different lengths unify to a list when their elements do.
        let elems: Vec<Type> = distinct
            .iter()
            .flat_map(|t| match t {
                Type::Tuple(ts) => ts.clone(),
                _ => Vec::new(),
            })
            .collect();
        return Some(Type::list(unify(&elems)?));
    }
    if all(|t| matches!(t, Type::Object(_) | Type::Map(_))) {
        let objs: Vec<&BTreeMap<String, Type>> = distinct
            .iter()
            .filter_map(|t| match t {
                Type::Object(m) => Some(m),
                _ => None,
            })
            .collect();
        if objs.len() == distinct.len() {
            let keys: BTreeSet<&String> = objs[0].keys().collect();
            if objs
                .iter()
                .all(|m| m.keys().collect::<BTreeSet<_>>() == keys)
            {
                let mut out = BTreeMap::new();
                for k in keys {
                    let col: Vec<Type> = objs.iter().map(|m| m[k].clone()).collect();
                    out.insert(k.clone(), unify(&col)?);
                }
                return Some(Type::Object(out));
            }
        }
        let mut elems = Vec::new();
        for t in &distinct {
            match t {
                Type::Map(e) => elems.push((**e).clone()),
                Type::Object(m) => elems.extend(m.values().cloned()),
                _ => {}
            }
        }
        return Some(Type::map(unify(&elems)?));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_to_list_unifies() {
        let v = Value::tuple(vec![Value::int(1), Value::string("a")]);
        let l = convert(&v, &Type::list(Type::Dynamic)).unwrap();
        assert_eq!(l.ty(), Type::list(Type::String));
        assert!(
            convert(
                &Value::tuple(vec![Value::int(1), Value::bool(true)]),
                &Type::list(Type::Dynamic)
            )
            .is_err()
        );
    }

    #[test]
    fn optional_attributes_become_null() {
        let want = Type::Object(BTreeMap::from([
            ("a".into(), Type::String),
            ("b".into(), Type::Optional(Box::new(Type::Number))),
        ]));
        let v = Value::object(BTreeMap::from([("a".into(), Value::int(1))]));
        let out = convert(&v, &want).unwrap();
        let m = out.as_map().unwrap();
        assert_eq!(m["a"].as_str(), Some("1"));
        assert!(m["b"].is_null());
        assert!(convert(&Value::empty_object(), &want).is_err());
    }
}
