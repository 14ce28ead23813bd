//! Type constraint expressions (`list(string)`, `object({a = optional(number, 1)})`)
//! as terraform's variable `type` argument reads them, with the defaults of
//! `optional()` attributes applied to values before conversion.

use std::collections::BTreeMap;

use crate::diag::{Diagnostics, Range};
use crate::syntax::{Expr, ObjKey};
use crate::value::{Kind, Type, Value};

/// Defaults for optional attributes, nested as the type is.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    /// Attribute name → default value (for object types).
    pub attrs: BTreeMap<String, Value>,
    /// Attribute name (objects) or "" (collection elements) → nested defaults.
    pub children: BTreeMap<String, Defaults>,
}

impl Defaults {
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty() && self.children.is_empty()
    }

    /// Fills null or missing optional attributes with their defaults.
    pub fn apply(&self, v: &Value) -> Value {
        if self.is_empty() || v.is_null() || !v.is_known() {
            return v.clone();
        }
        let sens = v.sensitive;
        let out = match &v.kind {
            Kind::Object(m) | Kind::Map(_, m)
                if !self.attrs.is_empty() || self.children.keys().any(|k| !k.is_empty()) =>
            {
                let mut m = m.clone();
                for (k, d) in &self.attrs {
                    if m.get(k).is_none_or(Value::is_null) {
                        m.insert(k.clone(), d.clone());
                    }
                }
                for (k, c) in &self.children {
                    if let Some(x) = m.get(k) {
                        let nx = c.apply(x);
                        m.insert(k.clone(), nx);
                    }
                }
                Value::object(m)
            }
            Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
                let Some(c) = self.children.get("") else {
                    return v.clone();
                };
                Value::tuple(e.iter().map(|x| c.apply(x)).collect())
            }
            Kind::Map(_, m) | Kind::Object(m) => {
                let Some(c) = self.children.get("") else {
                    return v.clone();
                };
                Value::object(m.iter().map(|(k, x)| (k.clone(), c.apply(x))).collect())
            }
            _ => v.clone(),
        };
        out.mark(sens)
    }
}

fn bad(r: &Range, detail: &str) -> Diagnostics {
    Diagnostics::error("Invalid type specification", detail, Some(r.clone()))
}

/// Reads a type constraint.
pub fn type_constraint(e: &Expr) -> Result<(Type, Defaults), Diagnostics> {
    parse(e, false)
}

fn parse(e: &Expr, in_object: bool) -> Result<(Type, Defaults), Diagnostics> {
    match e {
        Expr::Var(name, r) => Ok((
            match name.as_str() {
                "string" => Type::String,
                "number" => Type::Number,
                "bool" => Type::Bool,
                "any" => Type::Dynamic,
                "list" | "set" | "map" | "tuple" | "object" => {
                    return Err(bad(
                        r,
                        &format!(
                            "The {name} type constructor requires one argument specifying the element type."
                        ),
                    ));
                }
                _ => {
                    return Err(bad(
                        r,
                        &format!("The keyword {name:?} is not a valid type specification."),
                    ));
                }
            },
            Defaults::default(),
        )),
        Expr::Paren(x, _) | Expr::Wrap(x, _) => parse(x, in_object),
        Expr::Literal(v, r) => match v.as_str() {
            // Legacy quoted types (terraform 0.11).
            Some("string") => Ok((Type::String, Defaults::default())),
            Some("list") => Ok((Type::list(Type::Dynamic), Defaults::default())),
            Some("map") => Ok((Type::map(Type::Dynamic), Defaults::default())),
            _ => Err(bad(
                r,
                "A type specification is either a primitive type keyword (bool, number, string) or a complex type constructor call, like list(string).",
            )),
        },
        Expr::Call {
            name, args, range, ..
        } => {
            let one = |args: &[Expr]| -> Result<(Type, Defaults), Diagnostics> {
                if args.len() != 1 {
                    return Err(bad(
                        range,
                        &format!(
                            "The {name} type constructor requires one argument specifying the element type."
                        ),
                    ));
                }
                parse(&args[0], false)
            };
            match name.as_str() {
                "list" | "set" | "map" => {
                    let (t, d) = one(args)?;
                    let mut defs = Defaults::default();
                    if !d.is_empty() {
                        defs.children.insert(String::new(), d);
                    }
                    let t = match name.as_str() {
                        "list" => Type::list(t),
                        "set" => Type::set(t),
                        _ => Type::map(t),
                    };
                    Ok((t, defs))
                }
                "optional" => {
                    if !in_object {
                        return Err(bad(
                            range,
                            "Keyword \"optional\" is valid only as a modifier for object type attributes.",
                        ));
                    }
                    if args.is_empty() || args.len() > 2 {
                        return Err(bad(
                            range,
                            "Optional attribute modifier expects one or two arguments: the attribute type and, optionally, a default value.",
                        ));
                    }
                    let (t, d) = parse(&args[0], false)?;
                    Ok((Type::Optional(Box::new(t)), d))
                }
                "tuple" => {
                    let Some(Expr::Tuple(items, _)) = args.first() else {
                        return Err(bad(
                            range,
                            "The tuple type constructor requires one argument specifying the element types as a list.",
                        ));
                    };
                    let mut ts = Vec::new();
                    for it in items {
                        ts.push(parse(it, false)?.0);
                    }
                    Ok((Type::Tuple(ts), Defaults::default()))
                }
                "object" => {
                    let Some(Expr::Object(items, _)) = args.first() else {
                        return Err(bad(
                            range,
                            "The object type constructor requires one argument specifying the attribute types as a map.",
                        ));
                    };
                    let mut attrs = BTreeMap::new();
                    let mut defs = Defaults::default();
                    for (k, v) in items {
                        let key = match k {
                            ObjKey::Name(n, _) => n.clone(),
                            ObjKey::Expr(Expr::Var(n, _)) => n.clone(),
                            ObjKey::Expr(Expr::Literal(l, _)) if l.as_str().is_some() => {
                                l.as_str().unwrap_or_default().to_string()
                            }
                            ObjKey::Expr(Expr::Literal(l, _)) if l.as_bool().is_some() => {
                                l.as_bool().unwrap_or_default().to_string()
                            }
                            ObjKey::Expr(Expr::Literal(l, _)) if l.is_null() => "null".to_string(),
                            ObjKey::Expr(x) => {
                                return Err(bad(
                                    x.range(),
                                    "Object constructor map keys must be attribute names.",
                                ));
                            }
                        };
                        let (t, d) = parse(v, true)?;
                        if let (Expr::Call { name, args, .. }, Type::Optional(inner)) = (v, &t)
                            && name == "optional"
                            && args.len() == 2
                        {
                            let scope_vars = BTreeMap::new();
                            let funcs = crate::funcs::Functions::terraform();
                            let scope = crate::eval::Scope {
                                vars: &scope_vars,
                                funcs: &funcs,
                                base_dir: std::path::PathBuf::new(),
                            };
                            let dv = crate::eval::eval(&args[1], &scope)?;
                            let dv = crate::convert::convert(&d.apply(&dv), inner).map_err(|e| {
                                Diagnostics::error("Invalid default value for optional attribute", format!("This default value is not compatible with the attribute's type constraint: {e}."), Some(args[1].range().clone()))
                            })?;
                            defs.attrs.insert(key.clone(), dv);
                        }
                        if !d.is_empty() {
                            defs.children.insert(key.clone(), d);
                        }
                        attrs.insert(key, t);
                    }
                    Ok((Type::Object(attrs), defs))
                }
                _ => Err(bad(
                    range,
                    &format!("Keyword {name:?} is not a valid type constructor."),
                )),
            }
        }
        other => Err(bad(
            other.range(),
            "A type specification is either a primitive type keyword (bool, number, string) or a complex type constructor call, like list(string).",
        )),
    }
}
