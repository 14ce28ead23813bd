//! Collection functions (lists, sets, maps, tuples, objects) with cty's
//! result types: `concat` of lists stays a list, of mixed values a tuple;
//! `keys` of an object is a tuple, of a map a list; and so on.

use std::collections::BTreeMap;

use unicode_segmentation::UnicodeSegmentation;

use super::{FnError, FnResult, Function, Functions, Param, def, int_arg, p, p_any, p_dyn, s};
use crate::convert::{convert, unify};
use crate::num::Number;
use crate::value::{Kind, Type, Value, set_order};

fn seq(v: &Value, i: usize) -> Result<&[Value], FnError> {
    v.as_seq()
        .ok_or_else(|| FnError::Arg(i, "list, set, or tuple value required".into()))
}

/// Rebuilds a value of the same collection kind as `like` from `items`.
fn same_kind(like: &Value, items: Vec<Value>) -> Value {
    match &like.kind {
        Kind::List(t, _) => Value::list(t.clone(), items),
        Kind::Set(t, _) => Value::set(t.clone(), items),
        _ => Value::tuple(items),
    }
}

fn p_unk(name: &'static str) -> Param {
    Param {
        name,
        ty: Type::Dynamic,
        nullable: false,
        unknown: true,
    }
}

pub(super) fn register(f: &mut Functions) {
    def(
        f,
        "length",
        vec![p_unk("value")],
        None,
        Type::Number,
        |a, _| {
            let v = &a[0];
            if !v.is_known() {
                return Ok(Value::unknown(Type::Number));
            }
            match &v.kind {
                Kind::String(x) => Ok(Value::int(x.graphemes(true).count() as i64)),
                _ => v.len().map(|n| Value::int(n as i64)).ok_or_else(|| {
                    FnError::Arg(
                        0,
                        "argument must be a string, a collection type, or a structural type".into(),
                    )
                }),
            }
        },
    );
    def(
        f,
        "element",
        vec![p_dyn("list"), p("index", Type::Number)],
        None,
        Type::Dynamic,
        |a, _| {
            let items = seq(&a[0], 0)?;
            if matches!(a[0].kind, Kind::Set(..)) {
                return Err(FnError::Arg(0, "cannot read elements from set".into()));
            }
            let i = int_arg(&a[1], 1)?;
            if items.is_empty() {
                return Err(FnError::Msg(
                    "cannot use element function with an empty list".into(),
                ));
            }
            if i < 0 {
                return Err(FnError::Msg(
                    "cannot use element function with a negative index".into(),
                ));
            }
            Ok(items[(i as usize) % items.len()].clone())
        },
    );
    def(
        f,
        "index",
        vec![p_dyn("list"), p_dyn("value")],
        None,
        Type::Dynamic,
        |a, _| {
            let items = seq(&a[0], 0)?;
            for (i, x) in items.iter().enumerate() {
                if x.equals(&a[1]) == Some(true) {
                    return Ok(Value::int(i as i64));
                }
            }
            Err(FnError::Msg("item not found".into()))
        },
    );
    def(
        f,
        "contains",
        vec![p_dyn("list"), p_dyn("value")],
        None,
        Type::Bool,
        |a, _| {
            let items = seq(&a[0], 0)?;
            Ok(Value::bool(
                items.iter().any(|x| x.equals(&a[1]) == Some(true)),
            ))
        },
    );
    def(
        f,
        "concat",
        vec![],
        Some(p_dyn("seqs")),
        Type::Dynamic,
        |a, _| {
            let mut out = Vec::new();
            let mut et: Option<Type> = None;
            let mut all_lists = true;
            for (i, x) in a.iter().enumerate() {
                match &x.kind {
                    Kind::List(t, e) => {
                        if et.as_ref().is_some_and(|u| u != t) {
                            all_lists = false;
                        }
                        et = Some(t.clone());
                        out.extend(e.iter().cloned());
                    }
                    Kind::Tuple(e) | Kind::Set(_, e) => {
                        all_lists = false;
                        out.extend(e.iter().cloned());
                    }
                    _ => {
                        return Err(FnError::Arg(
                            i,
                            "all arguments must be lists or tuples".into(),
                        ));
                    }
                }
            }
            if all_lists && !a.is_empty() {
                return Ok(Value::list(et.unwrap_or(Type::Dynamic), out));
            }
            Ok(Value::tuple(out))
        },
    );
    def(
        f,
        "coalesce",
        vec![],
        Some(p_any("vals")),
        Type::Dynamic,
        |a, _| {
            let tys: Vec<Type> = a.iter().map(Value::ty).collect();
            let t = unify(&tys)
                .ok_or_else(|| FnError::Msg("all arguments must have the same type".into()))?;
            for x in a {
                if !x.is_known() {
                    return Ok(Value::unknown(t));
                }
                if x.is_null() || x.as_str() == Some("") {
                    continue;
                }
                return convert(x, &t).map_err(|e| FnError::Msg(e.to_string()));
            }
            Err(FnError::Msg(
                "no non-null, non-empty-string arguments".into(),
            ))
        },
    );
    def(
        f,
        "coalescelist",
        vec![],
        Some(p_any("vals")),
        Type::Dynamic,
        |a, _| {
            for (i, x) in a.iter().enumerate() {
                if !x.is_known() {
                    return Ok(Value::unknown(Type::Dynamic));
                }
                if x.is_null() {
                    continue;
                }
                let items = seq(x, i)?;
                if !items.is_empty() {
                    return Ok(x.clone());
                }
            }
            Err(FnError::Msg("no non-null arguments".into()))
        },
    );
    def(
        f,
        "compact",
        vec![p("list", Type::list(Type::String))],
        None,
        Type::list(Type::String),
        |a, _| {
            let items = seq(&a[0], 0)?;
            Ok(Value::list(
                Type::String,
                items
                    .iter()
                    .filter(|x| !x.is_null() && x.as_str() != Some(""))
                    .cloned()
                    .collect(),
            ))
        },
    );
    def(
        f,
        "distinct",
        vec![p("list", Type::list(Type::Dynamic))],
        None,
        Type::list(Type::Dynamic),
        |a, _| {
            let items = seq(&a[0], 0)?;
            let mut out: Vec<Value> = Vec::new();
            for x in items {
                if !out.iter().any(|y| y.raw_equals(x)) {
                    out.push(x.clone());
                }
            }
            Ok(same_kind(&a[0], out))
        },
    );
    def(
        f,
        "flatten",
        vec![p_dyn("list")],
        None,
        Type::Dynamic,
        |a, _| {
            fn flat(v: &Value, out: &mut Vec<Value>) -> bool {
                match &v.kind {
                    Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
                        for x in e {
                            if !x.is_known() {
                                return false;
                            }
                            if x.as_seq().is_some() {
                                if !flat(x, out) {
                                    return false;
                                }
                            } else {
                                out.push(x.clone());
                            }
                        }
                        true
                    }
                    _ => {
                        out.push(v.clone());
                        true
                    }
                }
            }
            seq(&a[0], 0)?;
            let mut out = Vec::new();
            if !flat(&a[0], &mut out) {
                return Ok(Value::unknown(Type::Dynamic));
            }
            Ok(Value::tuple(out))
        },
    );
    def(
        f,
        "keys",
        vec![p_dyn("inputMap")],
        None,
        Type::Dynamic,
        |a, _| match &a[0].kind {
            Kind::Map(_, m) => Ok(Value::list(
                Type::String,
                m.keys().map(|k| Value::string(k.clone())).collect(),
            )),
            Kind::Object(m) => Ok(Value::tuple(
                m.keys().map(|k| Value::string(k.clone())).collect(),
            )),
            _ => Err(FnError::Arg(0, "must have map or object type".into())),
        },
    );
    def(
        f,
        "values",
        vec![p_dyn("mapping")],
        None,
        Type::Dynamic,
        |a, _| match &a[0].kind {
            Kind::Map(t, m) => Ok(Value::list(t.clone(), m.values().cloned().collect())),
            Kind::Object(m) => Ok(Value::tuple(m.values().cloned().collect())),
            _ => Err(FnError::Arg(0, "must have map or object type".into())),
        },
    );
    def(
        f,
        "lookup",
        vec![p_dyn("inputMap"), p("key", Type::String)],
        Some(p_any("default")),
        Type::Dynamic,
        |a, _| {
            if a.len() > 3 {
                return Err(FnError::Msg("lookup() with too many arguments".into()));
            }
            let m = a[0]
                .as_map()
                .ok_or_else(|| FnError::Arg(0, "the given value is not a map".into()))?;
            match m.get(s(&a[1])) {
                Some(v) => {
                    if let (Kind::Map(t, _), Some(_)) = (&a[0].kind, a.get(2)) {
                        return Ok(convert(v, t).unwrap_or_else(|_| v.clone()));
                    }
                    Ok(v.clone())
                }
                None => match a.get(2) {
                    Some(d) => {
                        if let Kind::Map(t, _) = &a[0].kind {
                            return convert(d, t).map_err(|e| FnError::Arg(2, e.to_string()));
                        }
                        Ok(d.clone())
                    }
                    None => Err(FnError::Msg(format!(
                        "lookup failed to find key {:?}",
                        s(&a[1])
                    ))),
                },
            }
        },
    );
    def(
        f,
        "merge",
        vec![],
        Some(p_any("maps")),
        Type::Dynamic,
        |a, _| {
            let mut out = BTreeMap::new();
            let mut all_maps = true;
            let mut et: Option<Type> = None;
            for (i, x) in a.iter().enumerate() {
                if x.is_null() {
                    continue;
                }
                if !x.is_known() {
                    return Ok(Value::unknown(Type::Dynamic));
                }
                match &x.kind {
                    Kind::Map(t, m) => {
                        if et.as_ref().is_some_and(|u| u != t) {
                            all_maps = false;
                        }
                        et = Some(t.clone());
                        out.extend(m.clone());
                    }
                    Kind::Object(m) => {
                        all_maps = false;
                        out.extend(m.clone());
                    }
                    _ => {
                        return Err(FnError::Arg(
                            i,
                            "arguments must be maps or objects, got ".to_string()
                                + &x.ty().friendly(),
                        ));
                    }
                }
            }
            if all_maps && et.is_some() {
                return Ok(Value::map(et.unwrap_or(Type::Dynamic), out));
            }
            Ok(Value::object(out))
        },
    );
    def(
        f,
        "one",
        vec![p_dyn("list")],
        None,
        Type::Dynamic,
        |a, _| {
            let items = seq(&a[0], 0)?;
            match items.len() {
                0 => Ok(Value::null(
                    a[0].ty().element().cloned().unwrap_or(Type::Dynamic),
                )),
                1 => Ok(items[0].clone()),
                _ => Err(FnError::Arg(
                    0,
                    "must be a list, set, or tuple value with either zero or one elements".into(),
                )),
            }
        },
    );
    def(
        f,
        "range",
        vec![],
        Some(p("params", Type::Number)),
        Type::list(Type::Number),
        |a, _| {
            let n = |i: usize| a[i].as_number().cloned().unwrap_or_else(Number::zero);
            let (start, limit, step) = match a.len() {
                1 => (Number::zero(), n(0), Number::from_i64(1)),
                2 => {
                    let (s0, l) = (n(0), n(1));
                    let st = if l < s0 {
                        Number::from_i64(-1)
                    } else {
                        Number::from_i64(1)
                    };
                    (s0, l, st)
                }
                3 => (n(0), n(1), n(2)),
                _ => {
                    return Err(FnError::Msg(
                        "must have one, two, or three arguments".into(),
                    ));
                }
            };
            if step.is_zero() {
                return Err(FnError::Msg("step must not be zero".into()));
            }
            let down = step.is_negative();
            if down && start < limit {
                return Err(FnError::Msg(
                    "for a negative step, the start value must be greater than the limit".into(),
                ));
            }
            if !down && start > limit {
                return Err(FnError::Msg(
                    "for a positive step, the start value must be less than the limit".into(),
                ));
            }
            let mut out = Vec::new();
            let mut cur = start;
            while if down { cur > limit } else { cur < limit } {
                if out.len() >= 1024 {
                    return Err(FnError::Msg("more than 1024 values were generated; either decrease the difference between start and end or use a smaller step".into()));
                }
                out.push(Value::number(cur.clone()));
                cur = cur.add(&step);
            }
            Ok(Value::list(Type::Number, out))
        },
    );
    def(
        f,
        "reverse",
        vec![p_dyn("list")],
        None,
        Type::Dynamic,
        |a, _| match &a[0].kind {
            Kind::List(t, e) => Ok(Value::list(t.clone(), e.iter().rev().cloned().collect())),
            Kind::Tuple(e) => Ok(Value::tuple(e.iter().rev().cloned().collect())),
            Kind::Set(t, e) => Ok(Value::list(t.clone(), e.iter().rev().cloned().collect())),
            _ => Err(FnError::Arg(
                0,
                "can only reverse list or tuple values".into(),
            )),
        },
    );
    def(
        f,
        "slice",
        vec![
            p_dyn("list"),
            p("start_index", Type::Number),
            p("end_index", Type::Number),
        ],
        None,
        Type::Dynamic,
        |a, _| {
            let items = seq(&a[0], 0)?;
            let (st, en) = (int_arg(&a[1], 1)?, int_arg(&a[2], 2)?);
            if st < 0 {
                return Err(FnError::Arg(1, "must be greater than or equal to 0".into()));
            }
            if en > items.len() as i64 {
                return Err(FnError::Arg(
                    2,
                    "must be less than or equal to the length of the input list".into(),
                ));
            }
            if st > en {
                return Err(FnError::Arg(
                    1,
                    "must be less than or equal to end_index".into(),
                ));
            }
            let part = items[st as usize..en as usize].to_vec();
            Ok(match &a[0].kind {
                Kind::List(t, _) | Kind::Set(t, _) => Value::list(t.clone(), part),
                _ => Value::tuple(part),
            })
        },
    );
    def(
        f,
        "sort",
        vec![p("list", Type::list(Type::String))],
        None,
        Type::list(Type::String),
        |a, _| {
            let mut items = seq(&a[0], 0)?.to_vec();
            if items.iter().any(Value::is_null) {
                return Err(FnError::Arg(
                    0,
                    "given list element must not be null".into(),
                ));
            }
            items.sort_by(|x, y| s(x).cmp(s(y)));
            Ok(Value::list(Type::String, items))
        },
    );
    def(
        f,
        "sum",
        vec![p_dyn("list")],
        None,
        Type::Dynamic,
        |a, _| {
            let items = seq(&a[0], 0)?;
            if items.is_empty() {
                return Err(FnError::Msg("cannot sum an empty list".into()));
            }
            let mut acc = Number::zero();
            for x in items {
                let n = convert(x, &Type::Number)
                    .ok()
                    .and_then(|v| v.as_number().cloned())
                    .ok_or_else(|| {
                        FnError::Arg(
                            0,
                            "argument must be list, set, or tuple of number values".into(),
                        )
                    })?;
                acc = acc.add(&n);
            }
            Ok(Value::number(acc))
        },
    );
    def(
        f,
        "transpose",
        vec![p("values", Type::map(Type::list(Type::String)))],
        None,
        Type::map(Type::list(Type::String)),
        |a, _| {
            let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for (k, l) in a[0].as_map().into_iter().flatten() {
                for v in l.as_seq().unwrap_or_default() {
                    out.entry(s(v).to_string())
                        .or_default()
                        .push(Value::string(k.clone()));
                }
            }
            Ok(Value::map(
                Type::list(Type::String),
                out.into_iter()
                    .map(|(k, v)| (k, Value::list(Type::String, v)))
                    .collect(),
            ))
        },
    );
    def(
        f,
        "zipmap",
        vec![p("keys", Type::list(Type::String)), p_dyn("values")],
        None,
        Type::Dynamic,
        |a, _| {
            let ks = seq(&a[0], 0)?;
            let vs = seq(&a[1], 1)?;
            if ks.len() != vs.len() {
                return Err(FnError::Msg(format!(
                    "number of keys ({}) does not match number of values ({})",
                    ks.len(),
                    vs.len()
                )));
            }
            let m: BTreeMap<String, Value> = ks
                .iter()
                .zip(vs)
                .map(|(k, v)| (s(k).to_string(), v.clone()))
                .collect();
            Ok(match &a[1].kind {
                Kind::List(t, _) | Kind::Set(t, _) => Value::map(t.clone(), m),
                _ => Value::object(m),
            })
        },
    );
    def(
        f,
        "chunklist",
        vec![
            p("list", Type::list(Type::Dynamic)),
            p("size", Type::Number),
        ],
        None,
        Type::list(Type::list(Type::Dynamic)),
        |a, _| {
            let items = seq(&a[0], 0)?;
            let n = int_arg(&a[1], 1)?;
            if n < 0 {
                return Err(FnError::Arg(1, "the size argument must be positive".into()));
            }
            let et = a[0].ty().element().cloned().unwrap_or(Type::Dynamic);
            if n == 0 {
                return Ok(Value::list(
                    Type::list(et.clone()),
                    vec![Value::list(et, items.to_vec())],
                ));
            }
            let chunks = items
                .chunks(n as usize)
                .map(|c| Value::list(et.clone(), c.to_vec()))
                .collect();
            Ok(Value::list(Type::list(et), chunks))
        },
    );
    def(
        f,
        "matchkeys",
        vec![
            p("values", Type::list(Type::Dynamic)),
            p("keys", Type::list(Type::Dynamic)),
            p("searchset", Type::list(Type::Dynamic)),
        ],
        None,
        Type::list(Type::Dynamic),
        |a, _| {
            let (vs, ks, ss) = (seq(&a[0], 0)?, seq(&a[1], 1)?, seq(&a[2], 2)?);
            if vs.len() != ks.len() {
                return Err(FnError::Msg(
                    "length of keys and values should be equal".into(),
                ));
            }
            let out = vs
                .iter()
                .zip(ks)
                .filter(|(_, k)| ss.iter().any(|x| x.equals(k) == Some(true)))
                .map(|(v, _)| v.clone())
                .collect();
            Ok(Value::list(
                a[0].ty().element().cloned().unwrap_or(Type::Dynamic),
                out,
            ))
        },
    );
    let setf = |name: &str, imp: super::Imp| Function {
        params: vec![p(
            if name == "setsubtract" {
                "a"
            } else {
                "first_set"
            },
            Type::set(Type::Dynamic),
        )],
        variadic: Some(p(
            if name == "setsubtract" {
                "b"
            } else {
                "other_sets"
            },
            Type::set(Type::Dynamic),
        )),
        ret: Type::set(Type::Dynamic),
        marks: false,
        imp,
    };
    f.insert(
        "setunion",
        setf("setunion", |a, _| {
            set_op(a, |acc, x| {
                let mut v = acc.to_vec();
                v.extend(x.iter().cloned());
                v
            })
        }),
    );
    f.insert(
        "setintersection",
        setf("setintersection", |a, _| {
            set_op(a, |acc, x| {
                acc.iter()
                    .filter(|e| x.iter().any(|y| y.raw_equals(e)))
                    .cloned()
                    .collect()
            })
        }),
    );
    let mut sub = setf("setsubtract", |a, _| {
        set_op(a, |acc, x| {
            acc.iter()
                .filter(|e| !x.iter().any(|y| y.raw_equals(e)))
                .cloned()
                .collect()
        })
    });
    sub.params.push(sub.variadic.take().expect("set above"));
    f.insert("setsubtract", sub);
    def(
        f,
        "setproduct",
        vec![],
        Some(p_dyn("sets")),
        Type::Dynamic,
        |a, _| {
            if a.is_empty() {
                return Err(FnError::Msg("at least one argument is required".into()));
            }
            let mut any_list = false;
            let mut ets = Vec::new();
            for (i, x) in a.iter().enumerate() {
                seq(x, i)?;
                any_list |= matches!(x.kind, Kind::List(..) | Kind::Tuple(..));
                ets.push(x.ty().element().cloned().unwrap_or(Type::Dynamic));
            }
            // Tuple arguments count as lists of their unified element type.
            let conv: Vec<Value> = a
                .iter()
                .map(|x| match &x.kind {
                    Kind::Tuple(_) => {
                        convert(x, &Type::list(Type::Dynamic)).unwrap_or_else(|_| x.clone())
                    }
                    _ => x.clone(),
                })
                .collect();
            let ets: Vec<Type> = conv
                .iter()
                .map(|x| x.ty().element().cloned().unwrap_or(Type::Dynamic))
                .collect();
            let mut acc: Vec<Vec<Value>> = vec![vec![]];
            for x in &conv {
                let items = x.as_seq().unwrap_or_default();
                let mut next = Vec::new();
                for prefix in &acc {
                    for it in items {
                        let mut p = prefix.clone();
                        p.push(it.clone());
                        next.push(p);
                    }
                }
                acc = next;
            }
            let et = Type::Tuple(ets);
            let rows: Vec<Value> = acc.into_iter().map(Value::tuple).collect();
            Ok(if any_list {
                Value::list(et, rows)
            } else {
                Value::set(et, rows)
            })
        },
    );
    def(
        f,
        "alltrue",
        vec![p("list", Type::list(Type::Bool))],
        None,
        Type::Bool,
        |a, _| {
            Ok(Value::bool(
                seq(&a[0], 0)?.iter().all(|x| x.as_bool() == Some(true)),
            ))
        },
    );
    def(
        f,
        "anytrue",
        vec![p("list", Type::list(Type::Bool))],
        None,
        Type::Bool,
        |a, _| {
            Ok(Value::bool(
                seq(&a[0], 0)?.iter().any(|x| x.as_bool() == Some(true)),
            ))
        },
    );
    def(
        f,
        "max",
        vec![],
        Some(p("numbers", Type::Number)),
        Type::Number,
        |a, _| minmax(a, true),
    );
    def(
        f,
        "min",
        vec![],
        Some(p("numbers", Type::Number)),
        Type::Number,
        |a, _| minmax(a, false),
    );
}

fn minmax(a: &[Value], max: bool) -> FnResult {
    let mut best: Option<Number> = None;
    for x in a {
        let n = x.as_number().cloned().unwrap_or_else(Number::zero);
        best = Some(match best {
            Some(b) if (max && b >= n) || (!max && b <= n) => b,
            _ => n,
        });
    }
    best.map(Value::number)
        .ok_or_else(|| FnError::Msg("must pass at least one number".into()))
}

fn set_op(a: &[Value], op: fn(&[Value], &[Value]) -> Vec<Value>) -> FnResult {
    let tys: Vec<Type> = a.iter().filter_map(|x| x.ty().element().cloned()).collect();
    let et = unify(&tys).unwrap_or(Type::Dynamic);
    let conv = |x: &Value| -> Vec<Value> {
        x.as_seq()
            .unwrap_or_default()
            .iter()
            .map(|e| convert(e, &et).unwrap_or_else(|_| e.clone()))
            .collect()
    };
    let mut acc = conv(&a[0]);
    for x in &a[1..] {
        acc = op(&acc, &conv(x));
    }
    acc.sort_by(set_order);
    Ok(Value::set(et, acc))
}
