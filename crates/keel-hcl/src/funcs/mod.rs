//! Terraform's built-in functions with cty's calling convention: arguments
//! converted to each parameter's type, null and unknown arguments handled
//! before the implementation runs (an unknown argument makes an unknown
//! result unless the parameter accepts unknowns), sensitive marks carried
//! from arguments to the result.

mod collections;
mod encoding;
mod misc;
mod strings;
pub mod tfprovider;

use std::collections::BTreeMap;
use std::path::Path;

use crate::convert::convert;
use crate::diag::{Diagnostics, Range};
use crate::syntax::Expr;
use crate::value::{Type, Value};

/// A parameter of a function.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: &'static str,
    pub ty: Type,
    pub nullable: bool,
    pub unknown: bool,
}

/// How an implementation failed.
#[derive(Debug)]
pub enum FnError {
    /// The argument at this position (0-based) is wrong.
    Arg(usize, String),
    /// The call as a whole failed.
    Msg(String),
}

impl From<String> for FnError {
    fn from(s: String) -> Self {
        FnError::Msg(s)
    }
}

pub type FnResult = Result<Value, FnError>;
pub type Imp = fn(&[Value], &CallCtx<'_>) -> FnResult;

/// Context an implementation may need.
pub struct CallCtx<'a> {
    pub base_dir: &'a Path,
    pub funcs: &'a Functions,
}

/// A built-in function.
#[derive(Clone)]
pub struct Function {
    pub params: Vec<Param>,
    pub variadic: Option<Param>,
    pub ret: Type,
    /// The implementation sees marked values (sensitive, nonsensitive, issensitive).
    pub marks: bool,
    pub imp: Imp,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("params", &self.params)
            .field("ret", &self.ret)
            .finish_non_exhaustive()
    }
}

fn call_err(name: &str, msg: &str, r: &Range) -> Diagnostics {
    Diagnostics::error(
        "Error in function call",
        format!("Call to function {name:?} failed: {msg}."),
        Some(r.clone()),
    )
}

impl Function {
    /// Calls the function on evaluated arguments (`exprs` give argument ranges).
    pub fn call(
        &self,
        name: &str,
        args: &[Value],
        exprs: &[Expr],
        range: &Range,
        ctx: &CallCtx<'_>,
    ) -> Result<Value, Diagnostics> {
        let arg_range = |i: usize| {
            exprs
                .get(i)
                .map_or_else(|| range.clone(), |e| e.range().clone())
        };
        if args.len() < self.params.len() {
            let missing = &self.params[args.len()];
            return Err(Diagnostics::error(
                "Not enough function arguments",
                format!(
                    "Function {name:?} expects {} argument(s). Missing value for {:?}.",
                    self.params.len(),
                    missing.name
                ),
                Some(range.clone()),
            ));
        }
        if args.len() > self.params.len() && self.variadic.is_none() {
            return Err(Diagnostics::error(
                "Too many function arguments",
                format!(
                    "Function {name:?} expects only {} argument(s).",
                    self.params.len()
                ),
                Some(arg_range(self.params.len())),
            ));
        }
        let mut sens = false;
        let mut conv = Vec::with_capacity(args.len());
        let mut unknown = false;
        for (i, a) in args.iter().enumerate() {
            let p = self
                .params
                .get(i)
                .or(self.variadic.as_ref())
                .expect("arity checked");
            let v = if self.marks {
                a.clone()
            } else {
                sens |= a.has_sensitive();
                if a.has_sensitive() {
                    a.unmark_deep()
                } else {
                    a.clone()
                }
            };
            if v.is_null() && !p.nullable {
                return Err(Diagnostics::error(
                    "Invalid function argument",
                    format!(
                        "Invalid value for {:?} parameter: argument must not be null.",
                        p.name
                    ),
                    Some(arg_range(i)),
                ));
            }
            let v = match convert(&v, &p.ty) {
                Ok(v) => v,
                Err(e) => {
                    return Err(Diagnostics::error(
                        "Invalid function argument",
                        format!("Invalid value for {:?} parameter: {e}.", p.name),
                        Some(arg_range(i)),
                    ));
                }
            };
            if !p.unknown && !v.is_wholly_known() {
                unknown = true;
            }
            conv.push(v);
        }
        if unknown {
            return Ok(Value::unknown(self.ret.clone()).mark(sens));
        }
        match (self.imp)(&conv, ctx) {
            Ok(v) => Ok(v.mark(sens)),
            Err(FnError::Arg(i, msg)) => {
                let p = self
                    .params
                    .get(i)
                    .or(self.variadic.as_ref())
                    .map_or("", |p| p.name);
                Err(Diagnostics::error(
                    "Invalid function argument",
                    format!("Invalid value for {p:?} parameter: {msg}."),
                    Some(arg_range(i)),
                ))
            }
            Err(FnError::Msg(m)) => Err(call_err(name, &m, range)),
        }
    }
}

/// The function table.
#[derive(Clone, Debug, Default)]
pub struct Functions {
    map: BTreeMap<String, Function>,
}

impl Functions {
    pub fn get(&self, name: &str) -> Option<&Function> {
        self.map.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    pub fn insert(&mut self, name: &str, f: Function) {
        self.map.insert(name.to_string(), f);
    }

    /// The functions as planning sees them: terraform's impure functions
    /// (`bcrypt`, `timestamp`, `uuid`) return unknown values, to be decided
    /// at apply (terraform's `PureOnly` scope).
    pub fn pure_only(&self) -> Functions {
        let mut f = self.clone();
        for name in ["bcrypt", "timestamp", "uuid"] {
            if let Some(x) = f.map.get_mut(name) {
                x.imp = |_, _| Ok(Value::unknown(Type::String));
            }
        }
        f
    }

    /// Terraform 1.11's built-in functions.
    pub fn terraform() -> Functions {
        let mut f = Functions::default();
        strings::register(&mut f);
        collections::register(&mut f);
        encoding::register(&mut f);
        misc::register(&mut f);
        // try and can are evaluated on expressions (see eval); listed for metadata.
        f.insert(
            "try",
            Function {
                params: vec![],
                variadic: Some(p_dyn("expressions")),
                ret: Type::Dynamic,
                marks: true,
                imp: |_, _| Err(FnError::Msg("try is special".into())),
            },
        );
        f.insert(
            "can",
            Function {
                params: vec![p_dyn("expression")],
                variadic: None,
                ret: Type::Bool,
                marks: true,
                imp: |_, _| Err(FnError::Msg("can is special".into())),
            },
        );
        f
    }
}

pub(crate) fn p(name: &'static str, ty: Type) -> Param {
    Param {
        name,
        ty,
        nullable: false,
        unknown: false,
    }
}

pub(crate) fn p_dyn(name: &'static str) -> Param {
    p(name, Type::Dynamic)
}

/// A parameter that accepts null (and unknown: functions like `coalesce` and
/// the type conversions look at them themselves).
pub(crate) fn p_any(name: &'static str) -> Param {
    Param {
        name,
        ty: Type::Dynamic,
        nullable: true,
        unknown: true,
    }
}

pub(crate) fn def(
    f: &mut Functions,
    name: &str,
    params: Vec<Param>,
    variadic: Option<Param>,
    ret: Type,
    imp: Imp,
) {
    f.insert(
        name,
        Function {
            params,
            variadic,
            ret,
            marks: false,
            imp,
        },
    );
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

pub(crate) fn int_arg(v: &Value, i: usize) -> Result<i64, FnError> {
    let n = v
        .as_number()
        .ok_or_else(|| FnError::Arg(i, "number required".into()))?;
    if !n.is_integer() {
        return Err(FnError::Arg(i, "value must be a whole number".into()));
    }
    n.to_i64()
        .ok_or_else(|| FnError::Arg(i, "value out of range".into()))
}

pub(crate) fn str_fn(f: &mut Functions, name: &str, imp: Imp) {
    str_fn_named(f, name, "str", imp);
}

/// A string-to-string function whose parameter terraform names `param`
/// (the name shows in argument errors and `metadata functions`).
pub(crate) fn str_fn_named(f: &mut Functions, name: &str, param: &'static str, imp: Imp) {
    def(
        f,
        name,
        vec![p(param, Type::String)],
        None,
        Type::String,
        imp,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_terraform_names() {
        let f = Functions::terraform();
        for n in [
            "upper",
            "jsonencode",
            "cidrsubnet",
            "templatefile",
            "try",
            "can",
            "setproduct",
            "formatdate",
        ] {
            assert!(f.get(n).is_some(), "{n}");
        }
    }
}
