//! Expression evaluation with hclsyntax's semantics over cty values: unknown
//! values pass through every operation, `sensitive` marks follow the data,
//! conditionals unify their result types, splats and for expressions build
//! tuples and objects.

use std::collections::BTreeMap;

use crate::convert::{convert, unify};
use crate::diag::{Diagnostic, Diagnostics, Range};
use crate::funcs::Functions;
use crate::num::Number;
use crate::syntax::{BinOp, Expr, ObjKey, Step, TPart, UnOp};
use crate::value::{Kind, Type, Value};

/// What names an expression can see: root variables, functions, and the
/// directory file functions read from.
pub struct Scope<'a> {
    pub vars: &'a BTreeMap<String, Value>,
    pub funcs: &'a Functions,
    /// Base directory for `file()` and friends.
    pub base_dir: std::path::PathBuf,
}

type R = Result<Value, Diagnostics>;

fn err(summary: &str, detail: impl Into<String>, r: &Range) -> Diagnostics {
    Diagnostics::error(summary, detail, Some(r.clone()))
}

/// Evaluates `e` in `scope`.
pub fn eval(e: &Expr, scope: &Scope<'_>) -> R {
    let mut ev = Evaluator {
        scope,
        locals: Vec::new(),
        splat: Vec::new(),
    };
    ev.eval(e)
}

pub(crate) struct Evaluator<'s, 'a> {
    pub(crate) scope: &'s Scope<'a>,
    locals: Vec<(String, Value)>,
    splat: Vec<Value>,
}

impl Evaluator<'_, '_> {
    pub(crate) fn eval(&mut self, e: &Expr) -> R {
        match e {
            Expr::Literal(v, _) => Ok(v.clone()),
            Expr::Paren(e, _) => self.eval(e),
            Expr::Wrap(e, _) => self.eval(e),
            Expr::Template(parts, _) => {
                let mut out = String::new();
                let mut sens = false;
                let mut unknown = false;
                self.template(parts, &mut out, &mut sens, &mut unknown)?;
                if unknown {
                    return Ok(Value::unknown(Type::String).mark(sens));
                }
                Ok(Value::string(out).mark(sens))
            }
            Expr::Tuple(items, _) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i)?);
                }
                Ok(Value::tuple(out))
            }
            Expr::Object(items, _) => {
                let mut out = BTreeMap::new();
                let mut sens = false;
                for (k, v) in items {
                    let key = match k {
                        ObjKey::Name(n, _) => n.clone(),
                        // `{ a = 1 }` and `{ (a) = 1 }`: a bare name is literal.
                        ObjKey::Expr(Expr::Var(n, _)) => n.clone(),
                        // `{ true = 1, null = 2 }`: keywords as keys are names too.
                        ObjKey::Expr(Expr::Literal(l, _))
                            if l.as_bool().is_some()
                                || (l.is_null() && l.ty() == Type::Dynamic) =>
                        {
                            l.as_bool()
                                .map_or_else(|| "null".to_string(), |b| b.to_string())
                        }
                        ObjKey::Expr(ke) => {
                            let kv = self.eval(ke)?;
                            if !kv.is_known() {
                                return Ok(Value::unknown(Type::Dynamic));
                            }
                            sens |= kv.sensitive;
                            if kv.is_null() {
                                return Err(err(
                                    "Invalid object key",
                                    "Key expression in object constructor must not be null.",
                                    ke.range(),
                                ));
                            }
                            match convert(&kv, &Type::String) {
                                Ok(s) => s.as_str().unwrap_or_default().to_string(),
                                Err(_) => {
                                    return Err(err(
                                        "Incorrect key type",
                                        "Can't use this value as a key: string required.",
                                        ke.range(),
                                    ));
                                }
                            }
                        }
                    };
                    let val = self.eval(v)?;
                    out.insert(key, val);
                }
                Ok(Value::object(out).mark(sens))
            }
            Expr::Var(name, r) => self.lookup(name, r),
            Expr::SplatItem(_) => Ok(self.splat.last().cloned().unwrap_or_else(Value::dyn_null)),
            Expr::Traverse(base, steps, _) => {
                let mut v = self.eval(base)?;
                for s in steps {
                    v = self.step(v, s)?;
                }
                Ok(v)
            }
            Expr::Splat(src, each, r) => self.splat_expr(src, each, r),
            Expr::Call {
                name,
                args,
                expand,
                range,
                name_range,
            } => self.call(name, args, *expand, range, name_range),
            Expr::Cond(c, t, f, r) => self.conditional(c, t, f, r),
            Expr::Unary(op, x, r) => {
                let v = self.eval(x)?;
                let sens = v.sensitive;
                let (want, what) = match op {
                    UnOp::Neg => (Type::Number, "number"),
                    UnOp::Not => (Type::Bool, "bool"),
                };
                let v = convert(&v, &want).map_err(|_| {
                    err(
                        "Invalid operand",
                        format!("Unsuitable value for unary operand: a {what} is required."),
                        r,
                    )
                })?;
                if !v.is_known() {
                    return Ok(Value::unknown(want).mark(sens));
                }
                if v.is_null() {
                    return Err(err(
                        "Invalid operand",
                        format!("Unsuitable value for unary operand: a {what} is required."),
                        r,
                    ));
                }
                Ok(match (op, &v.kind) {
                    (UnOp::Neg, Kind::Number(n)) => Value::number(n.neg()),
                    (UnOp::Not, Kind::Bool(b)) => Value::bool(!b),
                    _ => Value::unknown(want),
                }
                .mark(sens))
            }
            Expr::Binary(op, a, b, r) => {
                let av = self.eval(a)?;
                let bv = self.eval(b)?;
                binary(*op, &av, &bv, a.range(), b.range(), r)
            }
            Expr::For(f) => self.for_expr(f),
        }
    }

    fn lookup(&self, name: &str, r: &Range) -> R {
        if let Some((_, v)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return Ok(v.clone());
        }
        match self.scope.vars.get(name) {
            Some(v) => Ok(v.clone()),
            None => Err(err(
                "Unknown variable",
                format!("There is no variable named {name:?}."),
                r,
            )),
        }
    }

    fn template(
        &mut self,
        parts: &[TPart],
        out: &mut String,
        sens: &mut bool,
        unknown: &mut bool,
    ) -> Result<(), Diagnostics> {
        for p in parts {
            match p {
                TPart::Lit(s) => out.push_str(s),
                TPart::Interp(e) => {
                    let v = self.eval(e)?;
                    *sens |= v.has_sensitive();
                    if !v.is_known() {
                        *unknown = true;
                        continue;
                    }
                    if v.is_null() {
                        return Err(err(
                            "Invalid template interpolation value",
                            "The expression result is null. Cannot include a null value in a string template.",
                            e.range(),
                        ));
                    }
                    match convert(&v, &Type::String) {
                        Ok(s) => match s.as_str() {
                            Some(s) => out.push_str(s),
                            None => *unknown = true,
                        },
                        Err(_) => {
                            return Err(err(
                                "Invalid template interpolation value",
                                format!(
                                    "Cannot include the given value in a string template: string required, but have {}.",
                                    v.ty().friendly()
                                ),
                                e.range(),
                            ));
                        }
                    }
                }
                TPart::If(c, t, f) => {
                    let cv = self.eval(c)?;
                    *sens |= cv.sensitive;
                    if !cv.is_known() {
                        *unknown = true;
                        continue;
                    }
                    let b = convert(&cv, &Type::Bool)
                        .ok()
                        .and_then(|v| v.as_bool())
                        .ok_or_else(|| {
                            err(
                                "Invalid template if directive",
                                "The condition value must be a bool.",
                                c.range(),
                            )
                        })?;
                    self.template(if b { t } else { f }, out, sens, unknown)?;
                }
                TPart::For {
                    key,
                    value,
                    coll,
                    body,
                } => {
                    let cv = self.eval(coll)?;
                    *sens |= cv.sensitive;
                    if !cv.is_known() {
                        *unknown = true;
                        continue;
                    }
                    let items = iter_items(&cv).ok_or_else(|| {
                        err(
                            "Invalid template for directive",
                            "A for directive can iterate only over collection values.",
                            coll.range(),
                        )
                    })?;
                    for (k, v) in items {
                        let n = self.locals.len();
                        if let Some(kn) = key {
                            self.locals.push((kn.clone(), k));
                        }
                        self.locals.push((value.clone(), v));
                        let res = self.template(body, out, sens, unknown);
                        self.locals.truncate(n);
                        res?;
                    }
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, v: Value, s: &Step) -> R {
        match s {
            Step::Attr(name, r) => get_attr(&v, name, r),
            Step::Index(ke, r) => {
                let k = self.eval(ke)?;
                index(&v, &k, r)
            }
        }
    }

    fn splat_expr(&mut self, src: &Expr, each: &Expr, r: &Range) -> R {
        let v = self.eval(src)?;
        let sens = v.sensitive;
        if !v.is_known() {
            return Ok(Value::unknown(Type::Dynamic).mark(sens));
        }
        let (items, is_list) = match &v.kind {
            Kind::Null(_) => return Ok(Value::tuple(vec![])),
            Kind::List(_, e) | Kind::Set(_, e) => (e.clone(), true),
            Kind::Tuple(e) => (e.clone(), false),
            _ => (vec![v.clone()], false),
        };
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            self.splat.push(it);
            let res = self.eval(each);
            self.splat.pop();
            out.push(res?);
        }
        let _ = r;
        if is_list {
            let tys: Vec<Type> = out.iter().map(Value::ty).collect();
            let et = unify(&tys).unwrap_or(Type::Dynamic);
            let out = out
                .iter()
                .map(|x| convert(x, &et).unwrap_or_else(|_| x.clone()))
                .collect();
            return Ok(Value::list(et, out).mark(sens));
        }
        Ok(Value::tuple(out).mark(sens))
    }

    fn conditional(&mut self, c: &Expr, t: &Expr, f: &Expr, r: &Range) -> R {
        let cv = self.eval(c)?;
        let tv = self.eval(t);
        let fv = self.eval(f);
        let tty = tv.as_ref().map_or(Type::Dynamic, Value::ty);
        let fty = fv.as_ref().map_or(Type::Dynamic, Value::ty);
        let rty = if tty == fty {
            tty
        } else {
            match unify(&[tty.clone(), fty.clone()]) {
                Some(t) => t,
                None => {
                    return Err(err(
                        "Inconsistent conditional result types",
                        format!(
                            "The true and false result expressions must have consistent types. The 'true' value is {}, but the 'false' value is {}.",
                            tty.friendly(),
                            fty.friendly()
                        ),
                        r,
                    ));
                }
            }
        };
        if cv.is_null() {
            return Err(err(
                "Null condition",
                "The condition value is null. Conditions must either be true or false.",
                c.range(),
            ));
        }
        if !cv.is_known() {
            return Ok(Value::unknown(rty).mark(cv.sensitive));
        }
        let b = convert(&cv, &Type::Bool)
            .ok()
            .and_then(|v| v.as_bool())
            .ok_or_else(|| {
                err(
                    "Incorrect condition type",
                    "The condition expression must be of type bool.",
                    c.range(),
                )
            })?;
        let chosen = if b { tv? } else { fv? };
        let out = convert(&chosen, &rty).unwrap_or(chosen);
        Ok(out.mark(cv.sensitive))
    }

    fn for_expr(&mut self, f: &crate::syntax::ForExpr) -> R {
        let cv = self.eval(&f.coll)?;
        let sens = cv.sensitive;
        if !cv.is_known() {
            return Ok(Value::unknown(Type::Dynamic).mark(sens));
        }
        if cv.is_null() {
            return Err(err(
                "Iteration over null value",
                "A null value cannot be used as the collection in a 'for' expression.",
                f.coll.range(),
            ));
        }
        let items = iter_items(&cv).ok_or_else(|| {
            err(
                "Iteration over non-iterable value",
                format!(
                    "A value of type {} cannot be used as the collection in a 'for' expression.",
                    cv.ty().friendly()
                ),
                f.coll.range(),
            )
        })?;
        let mut tuple = Vec::new();
        let mut obj: BTreeMap<String, Value> = BTreeMap::new();
        let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut unknown = false;
        for (k, v) in items {
            let n = self.locals.len();
            if let Some(kn) = &f.key_var {
                self.locals.push((kn.clone(), k));
            }
            self.locals.push((f.value_var.clone(), v));
            let res = self.for_one(f, &mut tuple, &mut obj, &mut groups, &mut unknown);
            self.locals.truncate(n);
            res?;
        }
        if unknown {
            return Ok(Value::unknown(Type::Dynamic).mark(sens));
        }
        if f.key.is_some() {
            if f.group {
                for (k, vs) in groups {
                    obj.insert(k, Value::tuple(vs));
                }
            }
            return Ok(Value::object(obj).mark(sens));
        }
        Ok(Value::tuple(tuple).mark(sens))
    }

    fn for_one(
        &mut self,
        f: &crate::syntax::ForExpr,
        tuple: &mut Vec<Value>,
        obj: &mut BTreeMap<String, Value>,
        groups: &mut BTreeMap<String, Vec<Value>>,
        unknown: &mut bool,
    ) -> Result<(), Diagnostics> {
        if let Some(c) = &f.cond {
            let cv = self.eval(c)?;
            if !cv.is_known() {
                *unknown = true;
                return Ok(());
            }
            let b = convert(&cv, &Type::Bool)
                .ok()
                .and_then(|v| v.as_bool())
                .ok_or_else(|| {
                    err(
                        "Invalid 'for' condition",
                        "The 'if' clause value is invalid: bool required.",
                        c.range(),
                    )
                })?;
            if !b {
                return Ok(());
            }
        }
        match &f.key {
            Some(ke) => {
                let kv = self.eval(ke)?;
                if !kv.is_known() {
                    *unknown = true;
                    return Ok(());
                }
                if kv.is_null() {
                    return Err(err(
                        "Invalid object key",
                        "Key expression in 'for' expression must not produce a null value.",
                        ke.range(),
                    ));
                }
                let k = convert(&kv, &Type::String)
                    .ok()
                    .and_then(|s| s.as_str().map(str::to_string))
                    .ok_or_else(|| {
                        err(
                            "Invalid object key",
                            "The key expression produced an invalid result: string required.",
                            ke.range(),
                        )
                    })?;
                let v = self.eval(&f.value)?;
                if f.group {
                    groups.entry(k).or_default().push(v);
                } else {
                    if obj.contains_key(&k) {
                        return Err(err(
                            "Duplicate object key",
                            format!(
                                "Two different items produced the key {k:?} in this 'for' expression. If duplicates are expected, use the ellipsis (...) after the value expression to enable grouping by key."
                            ),
                            ke.range(),
                        ));
                    }
                    obj.insert(k, v);
                }
            }
            None => tuple.push(self.eval(&f.value)?),
        }
        Ok(())
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Expr],
        expand: bool,
        range: &Range,
        name_range: &Range,
    ) -> R {
        // try() and can() see their arguments' errors, so they take expressions.
        match name {
            "try" => {
                if args.is_empty() {
                    return Err(err(
                        "Not enough function arguments",
                        "Function \"try\" expects at least one argument.",
                        range,
                    ));
                }
                let mut last = None;
                for a in args {
                    match self.eval(a) {
                        Ok(v) if !v.is_wholly_known() => return Ok(Value::unknown(Type::Dynamic)),
                        Ok(v) => return Ok(v),
                        Err(e) => last = Some(e),
                    }
                }
                return Err(err(
                    "Error in function call",
                    format!(
                        "Call to function \"try\" failed: no expression succeeded:\n{}\n\nAt least one expression must produce a successful result.",
                        last.map(|d| d
                            .0
                            .iter()
                            .map(|x| format!(
                                "- {} (at {})\n  {}",
                                x.summary,
                                x.subject.as_ref().map_or(String::new(), |r| format!(
                                    "{}:{},{}-{}",
                                    r.filename, r.start.line, r.start.column, r.end.column
                                )),
                                x.detail
                            ))
                            .collect::<Vec<_>>()
                            .join("\n"))
                            .unwrap_or_default()
                    ),
                    range,
                ));
            }
            "can" => {
                if args.len() != 1 {
                    return Err(err(
                        "Incorrect function arguments",
                        "Function \"can\" expects one argument.",
                        range,
                    ));
                }
                return Ok(match self.eval(&args[0]) {
                    Ok(v) if !v.is_wholly_known() => Value::unknown(Type::Bool),
                    Ok(_) => Value::bool(true),
                    Err(_) => Value::bool(false),
                });
            }
            _ => {}
        }
        let Some(f) = self.scope.funcs.get(name) else {
            if let Some((provider, func)) = name
                .strip_prefix("provider::")
                .and_then(|r| r.split_once("::"))
            {
                return Err(err(
                    "Unknown provider function",
                    format!(
                        "There is no function named {name:?}. Ensure that provider name {provider:?} is declared in this module's required_providers block, and that this provider offers a function named {func:?}."
                    ),
                    name_range,
                ));
            }
            return Err(err(
                "Call to unknown function",
                format!("There is no function named {name:?}."),
                name_range,
            ));
        };
        let mut vals = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            let v = self.eval(a)?;
            if expand && i + 1 == args.len() {
                if !v.is_known() {
                    return Ok(Value::unknown(Type::Dynamic));
                }
                match v.as_seq() {
                    Some(items) => vals.extend(items.iter().map(|x| x.clone().mark(v.sensitive))),
                    None => {
                        return Err(err(
                            "Invalid expanding argument value",
                            "The expanding argument (indicated by ...) must be of a tuple, list, or set type.",
                            a.range(),
                        ));
                    }
                }
            } else {
                vals.push(v);
            }
        }
        let ctx = crate::funcs::CallCtx {
            base_dir: &self.scope.base_dir,
            funcs: self.scope.funcs,
        };
        f.call(name, &vals, args, range, &ctx)
    }
}

/// (key, value) pairs of a collection, for `for` expressions and directives.
pub fn iter_items(v: &Value) -> Option<Vec<(Value, Value)>> {
    let sens = v.sensitive;
    Some(match &v.kind {
        Kind::List(_, e) | Kind::Tuple(e) => e
            .iter()
            .enumerate()
            .map(|(i, x)| (Value::int(i as i64), x.clone().mark(sens)))
            .collect(),
        Kind::Set(_, e) => e
            .iter()
            .map(|x| (x.clone(), x.clone().mark(sens)))
            .collect(),
        Kind::Map(_, m) | Kind::Object(m) => m
            .iter()
            .map(|(k, x)| (Value::string(k.clone()), x.clone().mark(sens)))
            .collect(),
        _ => return None,
    })
}

/// `v.name`.
pub fn get_attr(v: &Value, name: &str, r: &Range) -> R {
    let sens = v.sensitive;
    match &v.kind {
        Kind::Unknown(t) => Ok(Value::unknown(match t {
            Type::Object(m) => m.get(name).cloned().unwrap_or(Type::Dynamic),
            Type::Map(e) => (**e).clone(),
            _ => Type::Dynamic,
        })
        .mark(sens)),
        Kind::Null(_) => Err(err(
            "Attempt to get attribute from null value",
            "This value is null, so it does not have any attributes.",
            r,
        )),
        Kind::Object(m) => m.get(name).map(|x| x.clone().mark(sens)).ok_or_else(|| {
            err(
                "Unsupported attribute",
                format!("This object does not have an attribute named {name:?}."),
                r,
            )
        }),
        Kind::Map(_, m) => m.get(name).map(|x| x.clone().mark(sens)).ok_or_else(|| {
            err(
                "Missing map element",
                format!("This map does not have an element with the key {name:?}."),
                r,
            )
        }),
        Kind::List(..) | Kind::Tuple(..) | Kind::Set(..) => Err(err(
            "Unsupported attribute",
            format!(
                "Can't access attributes on a list of objects. Did you mean to access attribute {name:?} for a specific element of the list, or across all elements of the list?"
            ),
            r,
        )),
        _ => Err(err(
            "Unsupported attribute",
            format!(
                "Can't access attributes on a primitive-typed value ({}).",
                v.ty().friendly()
            ),
            r,
        )),
    }
}

/// `v[k]`.
pub fn index(v: &Value, k: &Value, r: &Range) -> R {
    let sens = v.sensitive || k.sensitive;
    if k.is_null() {
        return Err(err(
            "Invalid index",
            "Can't use a null value as an indexing key.",
            r,
        ));
    }
    match &v.kind {
        Kind::Null(_) => Err(err(
            "Attempt to index null value",
            "This value is null, so it does not have any indices.",
            r,
        )),
        Kind::Unknown(t) => {
            Ok(Value::unknown(t.element().cloned().unwrap_or(Type::Dynamic)).mark(sens))
        }
        Kind::List(_, e) | Kind::Tuple(e) => {
            if !k.is_known() {
                return Ok(
                    Value::unknown(v.ty().element().cloned().unwrap_or(Type::Dynamic)).mark(sens),
                );
            }
            let n = convert(k, &Type::Number).ok();
            let i = n
                .as_ref()
                .and_then(|n| n.as_number())
                .and_then(Number::to_i64);
            match i {
                Some(i) if i >= 0 && (i as usize) < e.len() => Ok(e[i as usize].clone().mark(sens)),
                Some(_) => Err(err(
                    "Invalid index",
                    "The given key does not identify an element in this collection value: the given index is greater than or equal to the length of the collection.",
                    r,
                )),
                None if n.is_none() => Err(err(
                    "Invalid index",
                    "The given key does not identify an element in this collection value: a number is required.",
                    r,
                )),
                None => Err(err(
                    "Invalid index",
                    "The given key does not identify an element in this collection value: the given index is not an integer.",
                    r,
                )),
            }
        }
        Kind::Map(_, m) | Kind::Object(m) => {
            if !k.is_known() {
                return Ok(Value::unknown(Type::Dynamic).mark(sens));
            }
            let key = convert(k, &Type::String)
                .ok()
                .and_then(|s| s.as_str().map(str::to_string));
            let Some(key) = key else {
                return Err(err(
                    "Invalid index",
                    "The given key does not identify an element in this collection value: string required.",
                    r,
                ));
            };
            m.get(&key).map(|x| x.clone().mark(sens)).ok_or_else(|| {
                if matches!(v.kind, Kind::Object(_)) {
                    err(
                        "Invalid index",
                        "The given key does not identify an element in this collection value."
                            .to_string(),
                        r,
                    )
                } else {
                    err(
                        "Invalid index",
                        "The given key does not identify an element in this collection value.",
                        r,
                    )
                }
            })
        }
        Kind::Set(..) => Err(err(
            "Invalid index",
            "Elements of a set are identified only by their value and don't have any separate index or key to select with, so it's only possible to perform operations across all elements of the set.",
            r,
        )),
        _ => Err(err(
            "Invalid index",
            "This value does not have any indices.",
            r,
        )),
    }
}

fn operand_err(side: &str, what: &str, r: &Range) -> Diagnostics {
    err(
        "Invalid operand",
        format!("Unsuitable value for {side} operand: {what} required."),
        r,
    )
}

/// A binary operation as hclsyntax does it (operands converted first).
pub fn binary(op: BinOp, a: &Value, b: &Value, ar: &Range, br: &Range, r: &Range) -> R {
    let sens = a.sensitive || b.sensitive;
    let _ = r;
    match op {
        BinOp::Eq | BinOp::NotEq => {
            let eq = a.equals(b);
            Ok(match eq {
                None => Value::unknown(Type::Bool),
                Some(e) => Value::bool(if op == BinOp::Eq { e } else { !e }),
            }
            .mark(sens))
        }
        BinOp::And | BinOp::Or => {
            let av = convert(a, &Type::Bool).map_err(|_| operand_err("left", "a bool", ar))?;
            let bv = convert(b, &Type::Bool).map_err(|_| operand_err("right", "a bool", br))?;
            if av.is_null() {
                return Err(operand_err("left", "a bool", ar));
            }
            if bv.is_null() {
                return Err(operand_err("right", "a bool", br));
            }
            let (x, y) = (av.as_bool(), bv.as_bool());
            let out = match (op, x, y) {
                (BinOp::And, Some(false), _) | (BinOp::And, _, Some(false)) => Value::bool(false),
                (BinOp::Or, Some(true), _) | (BinOp::Or, _, Some(true)) => Value::bool(true),
                (_, Some(x), Some(y)) => {
                    Value::bool(if op == BinOp::And { x && y } else { x || y })
                }
                _ => Value::unknown(Type::Bool),
            };
            Ok(out.mark(sens))
        }
        _ => {
            let av = convert(a, &Type::Number).map_err(|_| operand_err("left", "a number", ar))?;
            let bv = convert(b, &Type::Number).map_err(|_| operand_err("right", "a number", br))?;
            if av.is_null() {
                return Err(operand_err("left", "a number", ar));
            }
            if bv.is_null() {
                return Err(operand_err("right", "a number", br));
            }
            let is_cmp = matches!(
                op,
                BinOp::Less | BinOp::LessEq | BinOp::Greater | BinOp::GreaterEq
            );
            let (Some(x), Some(y)) = (av.as_number(), bv.as_number()) else {
                return Ok(
                    Value::unknown(if is_cmp { Type::Bool } else { Type::Number }).mark(sens),
                );
            };
            let out = match op {
                BinOp::Add => Value::number(x.add(y)),
                BinOp::Sub => Value::number(x.sub(y)),
                BinOp::Mul => Value::number(x.mul(y)),
                BinOp::Div => match x.div(y) {
                    Some(n) => Value::number(n),
                    None => {
                        return Err(err(
                            "Operation failed",
                            "Error during operation: can't divide zero by zero or infinity by infinity.",
                            r,
                        ));
                    }
                },
                BinOp::Mod => Value::number(x.rem(y)),
                BinOp::Less => Value::bool(x < y),
                BinOp::LessEq => Value::bool(x <= y),
                BinOp::Greater => Value::bool(x > y),
                BinOp::GreaterEq => Value::bool(x >= y),
                _ => unreachable!("handled above"),
            };
            Ok(out.mark(sens))
        }
    }
}

/// Convenience for diagnostics built outside this module.
pub fn diag(summary: &str, detail: impl Into<String>, r: &Range) -> Diagnostic {
    Diagnostic::error(summary, detail, Some(r.clone()))
}
