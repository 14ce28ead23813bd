//! The executor: walks parsed trees over a [`Value`] with Go 1.19's
//! `text/template/exec.go` semantics and error messages.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::rc::Rc;

use crate::funcs::{FuncDef, Imp, Ty};
use crate::parse::{Arg, Command, Control, Node, Pipe, Tree};
use crate::value::Value;
use crate::{Error, MissingKey, Templates};

/// Go's limit on nested `{{template}}` calls.
const MAX_EXEC_DEPTH: usize = 100_000;

#[derive(Clone, Copy)]
enum At<'t> {
    None,
    Node(&'t Node),
    Pipe(&'t Pipe),
    Cmd(&'t Command),
    Arg(&'t Arg),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::None => Ok(()),
            At::Node(n) => write!(f, "{n}"),
            At::Pipe(p) => write!(f, "{p}"),
            At::Cmd(c) => write!(f, "{c}"),
            At::Arg(a) => write!(f, "{a}"),
        }
    }
}

impl At<'_> {
    fn pos(&self) -> usize {
        match self {
            At::None => 0,
            At::Node(n) => n.pos(),
            At::Pipe(p) => p.pos,
            At::Cmd(c) => c.pos,
            At::Arg(a) => a.pos(),
        }
    }
}

pub(crate) enum Flow {
    Break,
    Continue,
    Err(Error),
}

impl From<Error> for Flow {
    fn from(e: Error) -> Self {
        Flow::Err(e)
    }
}

type R<T> = Result<T, Error>;

/// How many nested `include` calls of one name Helm allows.
const INCLUDE_MAX: usize = 1000;

pub(crate) struct State<'t> {
    pub(crate) set: &'t Templates,
    tree: &'t Tree,
    vars: Vec<(&'t str, Value)>,
    depth: usize,
    at: At<'t>,
    pub(crate) out: String,
    pub(crate) included: Rc<std::cell::RefCell<HashMap<String, usize>>>,
    /// Dot is a range element, whose static Go type is interface{}.
    range_dot: bool,
}

/// "no final value" marker (Go's `missingVal`).
enum Final {
    Missing,
    Val(Value),
}

impl<'t> State<'t> {
    pub(crate) fn new(
        set: &'t Templates,
        tree: &'t Tree,
        dot: Value,
        included: Rc<std::cell::RefCell<HashMap<String, usize>>>,
    ) -> Self {
        State {
            set,
            tree,
            vars: vec![("$", dot)],
            depth: 0,
            at: At::None,
            out: String::new(),
            included,
            range_dot: false,
        }
    }

    pub(crate) fn run(&mut self, dot: &Value) -> R<()> {
        let root = &self.tree.root;
        match self.walk_list(dot, root) {
            Ok(()) => Ok(()),
            Err(Flow::Err(e)) => Err(e),
            Err(Flow::Break | Flow::Continue) => Ok(()),
        }
    }

    fn errorf(&self, msg: impl fmt::Display) -> Error {
        let name = &self.tree.name;
        if matches!(self.at, At::None) {
            return Error::Exec(format!("template: {name}: {msg}"));
        }
        let loc = self.tree.location(self.at.pos());
        let ctx = self.at.to_string();
        Error::Exec(format!(
            "template: {loc}: executing {} at <{}>: {msg}",
            crate::gofmt::quote(name),
            ctx
        ))
    }

    fn walk_list(&mut self, dot: &Value, list: &'t [Node]) -> Result<(), Flow> {
        for n in list {
            self.walk(dot, n)?;
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Value, node: &'t Node) -> Result<(), Flow> {
        self.at = At::Node(node);
        match node {
            Node::Text { text, .. } => {
                self.out.push_str(text);
                Ok(())
            }
            Node::Action { pipe, .. } => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at = At::Node(node);
                    self.print_value(&v);
                }
                Ok(())
            }
            Node::If(c) => {
                stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.walk_if_with(false, dot, c))
            }
            Node::With(c) => {
                stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.walk_if_with(true, dot, c))
            }
            Node::Range(c) => {
                stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.walk_range(dot, c))
            }
            Node::Template { name, pipe, .. } => self.walk_template(dot, name, pipe.as_ref()),
            Node::Break { .. } => Err(Flow::Break),
            Node::Continue { .. } => Err(Flow::Continue),
            Node::Comment => Ok(()),
        }
    }

    fn print_value(&mut self, v: &Value) {
        match v {
            Value::Invalid => self.out.push_str("<no value>"),
            Value::Object(o) => self.out.push_str(&o.display()),
            Value::Str(s) => self.out.push_str(s),
            Value::Int(i) | Value::Int64(i) => {
                let _ = write!(self.out, "{i}");
            }
            _ => self.out.push_str(&crate::gofmt::sprint_value(v)),
        }
    }

    fn walk_if_with(&mut self, with: bool, dot: &Value, c: &'t Control) -> Result<(), Flow> {
        let mark = self.vars.len();
        let r = (|| {
            let val = self.eval_pipeline(dot, &c.pipe)?;
            if val.truth() {
                if with {
                    let saved = std::mem::replace(&mut self.range_dot, false);
                    let r = self.walk_list(&val, &c.list);
                    self.range_dot = saved;
                    r
                } else {
                    self.walk_list(dot, &c.list)
                }
            } else if let Some(e) = &c.else_list {
                self.walk_list(dot, e)
            } else {
                Ok(())
            }
        })();
        self.vars.truncate(mark);
        r
    }

    fn walk_range(&mut self, dot: &Value, c: &'t Control) -> Result<(), Flow> {
        let mark0 = self.vars.len();
        let r = self.walk_range_inner(dot, c);
        self.vars.truncate(mark0);
        match r {
            Err(Flow::Break) => Ok(()),
            other => other,
        }
    }

    fn range_iter(&mut self, c: &'t Control, index: Value, elem: Value) -> Result<(), Flow> {
        let mark = self.vars.len();
        if !c.pipe.decl.is_empty() {
            self.set_top_var(1, elem.clone());
        }
        if c.pipe.decl.len() > 1 {
            self.set_top_var(2, index);
        }
        let saved = std::mem::replace(&mut self.range_dot, true);
        let r = self.walk_list(&elem, &c.list);
        self.range_dot = saved;
        self.vars.truncate(mark);
        match r {
            Err(Flow::Continue) => Ok(()),
            other => other,
        }
    }

    fn walk_range_inner(&mut self, dot: &Value, c: &'t Control) -> Result<(), Flow> {
        let val = self.eval_pipeline(dot, &c.pipe)?;
        match &val {
            Value::List(l) if !l.is_empty() => {
                let l = l.clone();
                for (i, e) in l.iter().enumerate() {
                    self.range_iter(c, Value::Int(i as i64), e.clone())?;
                }
                return Ok(());
            }
            Value::Map(m) if !m.borrow().is_empty() => {
                // Go ranges over a sorted snapshot; the body may change the map.
                let snapshot: Vec<(String, Value)> = m
                    .borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, e) in snapshot {
                    self.range_iter(c, Value::string(k), e)?;
                }
                return Ok(());
            }
            Value::Object(o) if o.items().is_some_and(|i| !i.is_empty()) => {
                for (i, e) in o.items().unwrap_or_default().into_iter().enumerate() {
                    self.range_iter(c, Value::Int(i as i64), e)?;
                }
                return Ok(());
            }
            Value::Object(o) if o.items().is_some() => {}
            Value::Object(o) if o.entries().is_some() => {
                let entries = o.entries().unwrap_or_default();
                if !entries.is_empty() {
                    for (k, e) in entries {
                        self.range_iter(c, Value::string(k), e)?;
                    }
                    return Ok(());
                }
            }
            Value::List(_) | Value::Map(_) | Value::Invalid | Value::Nil => {}
            other => {
                return Err(self
                    .errorf(format!(
                        "range can't iterate over {}",
                        crate::gofmt::sprint_value(other)
                    ))
                    .into());
            }
        }
        if let Some(e) = &c.else_list {
            self.walk_list(dot, e)?;
        }
        Ok(())
    }

    fn set_top_var(&mut self, n: usize, v: Value) {
        let l = self.vars.len();
        self.vars[l - n].1 = v;
    }

    fn walk_template(
        &mut self,
        dot: &Value,
        name: &str,
        pipe: Option<&'t Pipe>,
    ) -> Result<(), Flow> {
        let Some(tree) = self.set.trees.get(name) else {
            return Err(self
                .errorf(format!(
                    "template {} not defined",
                    crate::gofmt::quote(name)
                ))
                .into());
        };
        if self.depth == MAX_EXEC_DEPTH {
            return Err(self
                .errorf(format!(
                    "exceeded maximum template depth ({MAX_EXEC_DEPTH})"
                ))
                .into());
        }
        let newdot = match pipe {
            Some(p) => self.eval_pipeline(dot, p)?,
            None => Value::Invalid,
        };
        let tree: &'t Tree = tree;
        let saved_tree = std::mem::replace(&mut self.tree, tree);
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$", newdot.clone())]);
        self.depth += 1;
        let saved_rd = std::mem::replace(&mut self.range_dot, false);
        let r = stacker::maybe_grow(256 * 1024, 8 * 1024 * 1024, || {
            self.walk_list(&newdot, &tree.root)
        });
        self.range_dot = saved_rd;
        self.depth -= 1;
        self.vars = saved_vars;
        self.tree = saved_tree;
        r
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &'t Pipe) -> R<Value> {
        self.at = At::Pipe(pipe);
        let mut value = Final::Missing;
        for cmd in &pipe.cmds {
            let v = self.eval_command(dot, cmd, value)?;
            // Go digs one level into interface{} values: a nil interface becomes invalid.
            value = Final::Val(if matches!(v, Value::Nil) {
                Value::Invalid
            } else {
                v
            });
        }
        let value = match value {
            Final::Val(v) => v,
            Final::Missing => Value::Invalid,
        };
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone());
            } else {
                self.vars.push((name.as_str(), value.clone()));
            }
        }
        Ok(value)
    }

    fn set_var(&mut self, name: &str, v: Value) {
        for i in (0..self.vars.len()).rev() {
            if self.vars[i].0 == name {
                self.vars[i].1 = v;
                return;
            }
        }
    }

    fn var_value(&self, name: &str) -> R<Value> {
        for (n, v) in self.vars.iter().rev() {
            if *n == name {
                return Ok(v.clone());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    fn not_a_function(&self, args: &[Arg], fin: &Final) -> R<()> {
        if args.len() > 1 || matches!(fin, Final::Val(_)) {
            return Err(self.errorf(format!("can't give argument to non-function {}", args[0])));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &'t Command, fin: Final) -> R<Value> {
        let first = &cmd.args[0];
        match first {
            Arg::Field { ident, .. } => {
                self.at = At::Arg(first);
                return self.eval_field_chain(dot, dot.clone(), first, ident, &cmd.args, fin);
            }
            Arg::Chain { node, fields, .. } => {
                return self.eval_chain(dot, first, node, fields, &cmd.args, fin);
            }
            Arg::Identifier { name, .. } => {
                self.at = At::Arg(first);
                return self.eval_function(dot, name, At::Cmd(cmd), &cmd.args, fin);
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                return stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.eval_pipeline(dot, p));
            }
            Arg::Variable { ident, .. } => {
                return self.eval_variable(dot, first, ident, &cmd.args, fin);
            }
            _ => {}
        }
        self.at = At::Arg(first);
        self.not_a_function(&cmd.args, &fin)?;
        match first {
            Arg::Bool { val, .. } => Ok(Value::Bool(*val)),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Nil { .. } => Err(self.errorf("nil is not a command")),
            Arg::Number { .. } => self.ideal_constant(first),
            Arg::Str { text, .. } => Ok(Value::str(text)),
            _ => Err(self.errorf(format!(
                "can't evaluate command {}",
                crate::gofmt::quote(&first.to_string())
            ))),
        }
    }

    fn ideal_constant(&mut self, a: &'t Arg) -> R<Value> {
        self.at = At::Arg(a);
        let Arg::Number { num, .. } = a else {
            return Ok(Value::Invalid);
        };
        let t = &num.text;
        let is_hex_int = t.len() > 2
            && t.starts_with('0')
            && (t.as_bytes()[1] == b'x' || t.as_bytes()[1] == b'X')
            && !t.contains(['p', 'P']);
        let is_rune = t.starts_with('\'');
        if num.is_float && !is_hex_int && !is_rune && t.contains(['.', 'e', 'E', 'p', 'P']) {
            return Ok(Value::Float(num.float));
        }
        if num.is_int {
            return Ok(Value::Int(num.int));
        }
        if num.is_uint {
            return Err(self.errorf(format!("{t} overflows int")));
        }
        Ok(Value::Invalid)
    }

    fn eval_chain(
        &mut self,
        dot: &Value,
        chain: &'t Arg,
        node: &'t Arg,
        fields: &'t [String],
        args: &'t [Arg],
        fin: Final,
    ) -> R<Value> {
        self.at = At::Arg(chain);
        if matches!(node, Arg::Nil { .. }) {
            return Err(self.errorf(format!("indirection through explicit nil in {chain}")));
        }
        // Go evaluates the operand with no type (`evalArg(dot, nil, …)`), so a
        // nil interface result stays invalid and `(nil).Field` is zero, not an error.
        let recv = self.eval_arg(dot, Ty::Value, node)?;
        self.at = At::Arg(chain);
        self.eval_field_chain(dot, recv, chain, fields, args, fin)
    }

    fn eval_variable(
        &mut self,
        dot: &Value,
        var: &'t Arg,
        ident: &'t [String],
        args: &'t [Arg],
        fin: Final,
    ) -> R<Value> {
        self.at = At::Arg(var);
        let v = self.var_value(&ident[0])?;
        if ident.len() == 1 {
            self.not_a_function(args, &fin)?;
            return Ok(v);
        }
        self.eval_field_chain(dot, v, var, &ident[1..], args, fin)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value,
        mut recv: Value,
        node: &'t Arg,
        ident: &'t [String],
        args: &'t [Arg],
        fin: Final,
    ) -> R<Value> {
        let n = ident.len();
        // The first receiver is dot or a variable (concrete unless it is a
        // range element); later ones come out of maps (interface{}).
        let first_iface = matches!(node, Arg::Field { .. }) && self.range_dot;
        for (i, id) in ident[..n - 1].iter().enumerate() {
            recv = self.eval_field(
                dot,
                id,
                node,
                &[],
                Final::Missing,
                &recv,
                i > 0 || first_iface,
            )?;
        }
        self.eval_field(
            dot,
            &ident[n - 1],
            node,
            args,
            fin,
            &recv,
            n > 1 || first_iface,
        )
    }

    fn eval_field(
        &mut self,
        dot: &Value,
        name: &str,
        node: &'t Arg,
        args: &'t [Arg],
        fin: Final,
        recv: &Value,
        iface: bool,
    ) -> R<Value> {
        match recv {
            Value::Invalid => {
                if self.set.missing_key == MissingKey::Error {
                    return Err(self.errorf(format!(
                        "nil data; no entry for key {}",
                        crate::gofmt::quote(name)
                    )));
                }
                Ok(Value::Invalid)
            }
            Value::Nil => Err(self.errorf(format!("nil pointer evaluating interface {{}}.{name}"))),
            Value::Map(m) => {
                let has_args = args.len() > 1 || matches!(fin, Final::Val(_));
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                let found = m.borrow().get(name).cloned();
                match found {
                    Some(v) => Ok(v),
                    None => match self.set.missing_key {
                        MissingKey::Invalid => Ok(Value::Invalid),
                        MissingKey::Zero => Ok(Value::Nil),
                        MissingKey::Error => Err(self.errorf(format!(
                            "map has no entry for key {}",
                            crate::gofmt::quote(name)
                        ))),
                    },
                }
            }
            Value::Object(o) => {
                if let Some(arity) = o.method_arity(name) {
                    let o = o.clone();
                    let mut argv = Vec::new();
                    let given =
                        args.len().saturating_sub(1) + usize::from(matches!(fin, Final::Val(_)));
                    if given != arity {
                        return Err(self.errorf(format!(
                            "wrong number of args for {name}: want {arity} got {given}"
                        )));
                    }
                    for a in args.iter().skip(1) {
                        argv.push(self.eval_arg(dot, Ty::Any, a)?);
                    }
                    if let Final::Val(v) = fin {
                        argv.push(v);
                    }
                    return match o.method(name, &argv) {
                        Some(Ok(v)) => Ok(v),
                        Some(Err(e)) => {
                            self.at = At::Arg(node);
                            Err(self.errorf(format!("error calling {name}: {e}")))
                        }
                        None => Err(self.errorf(format!(
                            "can't evaluate field {name} in type {}",
                            o.type_name()
                        ))),
                    };
                }
                match o.field(name) {
                    Some(v) => {
                        if args.len() > 1 || matches!(fin, Final::Val(_)) {
                            return Err(self.errorf(format!(
                                "{name} has arguments but cannot be invoked as function"
                            )));
                        }
                        Ok(v)
                    }
                    None => Err(self.errorf(format!(
                        "can't evaluate field {name} in type {}",
                        o.type_name()
                    ))),
                }
            }
            // Values reached through maps and lists have static type interface{}.
            other => Err(self.errorf(format!(
                "can't evaluate field {name} in type {}",
                if iface {
                    "interface {}".to_string()
                } else {
                    other.type_name()
                }
            ))),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        name: &str,
        err_at: At<'t>,
        args: &'t [Arg],
        fin: Final,
    ) -> R<Value> {
        let Some(f) = self.set.funcs.get(name) else {
            return Err(self.errorf(format!(
                "{} is not a defined function",
                crate::gofmt::quote(name)
            )));
        };
        let f: &'t FuncDef = f;
        self.eval_call(dot, f, err_at, name, args, fin)
    }

    fn eval_call(
        &mut self,
        dot: &Value,
        f: &'t FuncDef,
        err_at: At<'t>,
        name: &str,
        args: &'t [Arg],
        fin: Final,
    ) -> R<Value> {
        let args = if args.is_empty() { args } else { &args[1..] };
        let num_in = args.len() + usize::from(matches!(fin, Final::Val(_)));
        let nparams = f.params.len();
        if f.variadic.is_some() {
            if num_in < nparams {
                return Err(self.errorf(format!(
                    "wrong number of args for {name}: want at least {nparams} got {}",
                    args.len()
                )));
            }
        } else if num_in != nparams {
            return Err(self.errorf(format!(
                "wrong number of args for {name}: want {nparams} got {num_in}"
            )));
        }
        if let Imp::AndOr(is_or) = f.imp {
            let mut v = Value::Invalid;
            for a in args {
                v = self.eval_arg(dot, Ty::Value, a)?;
                if v.truth() == is_or {
                    return Ok(v);
                }
            }
            if let Final::Val(fv) = fin {
                v = fv;
            }
            return Ok(v);
        }
        let mut argv: Vec<Value> = Vec::with_capacity(num_in);
        let fixed = if f.variadic.is_some() {
            nparams
        } else {
            args.len()
        };
        let mut i = 0;
        while i < fixed && i < args.len() {
            argv.push(self.eval_arg(dot, f.params[i], &args[i])?);
            i += 1;
        }
        if let Some(vt) = f.variadic {
            while i < args.len() {
                argv.push(self.eval_arg(dot, vt, &args[i])?);
                i += 1;
            }
        }
        if let Final::Val(fv) = fin {
            let t = if let Some(vt) = f.variadic {
                if num_in - 1 < nparams {
                    f.params[num_in - 1]
                } else {
                    vt
                }
            } else {
                f.params[nparams - 1]
            };
            argv.push(self.validate_type(fv, t)?);
        }
        let r = match f.imp {
            Imp::Plain(func) => func(&argv),
            Imp::State(func) => func(self, &argv),
            Imp::AndOr(_) => unreachable!("handled above"),
        };
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                self.at = err_at;
                Err(self.errorf(format!("error calling {name}: {e}")))
            }
        }
    }

    fn validate_type(&self, v: Value, t: Ty) -> R<Value> {
        if let Value::Invalid = v {
            return match t {
                Ty::Value => Ok(Value::Invalid),
                Ty::Any => Ok(Value::Nil),
                Ty::List => Ok(Value::list(Vec::new())),
                Ty::Map => Ok(Value::map(BTreeMap::new())),
                _ => Err(self.errorf(format!("invalid value; expected {}", t.go_name()))),
            };
        }
        let ok = matches!(
            (t, &v),
            (Ty::Any | Ty::Value, _)
                | (Ty::Str, Value::Str(_))
                | (Ty::Int, Value::Int(_))
                | (Ty::Int64, Value::Int64(_))
                | (Ty::Float, Value::Float(_))
                | (Ty::Bool, Value::Bool(_))
                | (Ty::List, Value::List(_))
                | (Ty::Map, Value::Map(_))
        ) || matches!((t, &v), (Ty::Cert, Value::Object(o)) if o.type_name() == crate::sprig::CERT_TYPE);
        if ok {
            return Ok(v);
        }
        Err(self.errorf(format!(
            "wrong type for value; expected {}; got {}",
            t.go_name(),
            v.type_name()
        )))
    }

    fn eval_arg(&mut self, dot: &Value, t: Ty, n: &'t Arg) -> R<Value> {
        self.at = At::Arg(n);
        match n {
            Arg::Dot { .. } => return self.validate_type(dot.clone(), t),
            Arg::Nil { .. } => {
                return match t {
                    Ty::Any => Ok(Value::Nil),
                    Ty::Value => Ok(Value::Invalid),
                    Ty::List => Ok(Value::list(Vec::new())),
                    Ty::Map => Ok(Value::map(BTreeMap::new())),
                    _ => Err(self.errorf(format!("cannot assign nil to {}", t.go_name()))),
                };
            }
            Arg::Field { ident, .. } => {
                let v = self.eval_field_chain(
                    dot,
                    dot.clone(),
                    n,
                    ident,
                    std::slice::from_ref(n),
                    Final::Missing,
                )?;
                return self.validate_type(v, t);
            }
            Arg::Variable { ident, .. } => {
                let v = self.eval_variable(dot, n, ident, &[], Final::Missing)?;
                return self.validate_type(v, t);
            }
            Arg::Pipe(p) => {
                let v = stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.eval_pipeline(dot, p))?;
                return self.validate_type(v, t);
            }
            Arg::Identifier { name, .. } => {
                let v = self.eval_function(dot, name, At::Arg(n), &[], Final::Missing)?;
                return self.validate_type(v, t);
            }
            Arg::Chain { node, fields, .. } => {
                let v = self.eval_chain(dot, n, node, fields, &[], Final::Missing)?;
                return self.validate_type(v, t);
            }
            _ => {}
        }
        match t {
            Ty::Bool => match n {
                Arg::Bool { val, .. } => Ok(Value::Bool(*val)),
                _ => Err(self.errorf(format!("expected bool; found {n}"))),
            },
            Ty::Float => match n {
                Arg::Number { num, .. } if num.is_float => Ok(Value::Float(num.float)),
                _ => Err(self.errorf(format!("expected float; found {n}"))),
            },
            Ty::Int | Ty::Int64 => match n {
                Arg::Number { num, .. } if num.is_int => Ok(if t == Ty::Int {
                    Value::Int(num.int)
                } else {
                    Value::Int64(num.int)
                }),
                _ => Err(self.errorf(format!("expected integer; found {n}"))),
            },
            // Go's evalUnsignedInteger: SetUint truncates to the type's width.
            Ty::Uint32 => match n {
                Arg::Number { num, .. } if num.is_uint => {
                    let u = num.text.parse::<u64>().unwrap_or(num.int as u64);
                    Ok(Value::Int(i64::from(u as u32)))
                }
                _ => Err(self.errorf(format!("expected unsigned integer; found {n}"))),
            },
            Ty::Str => match n {
                Arg::Str { text, .. } => Ok(Value::str(text)),
                _ => Err(self.errorf(format!("expected string; found {n}"))),
            },
            Ty::Any | Ty::Value => match n {
                Arg::Bool { val, .. } => Ok(Value::Bool(*val)),
                Arg::Number { .. } => self.ideal_constant(n),
                Arg::Str { text, .. } => Ok(Value::str(text)),
                _ => Err(self.errorf(format!(
                    "can't handle assignment of {n} to empty interface argument"
                ))),
            },
            Ty::List | Ty::Map | Ty::Cert => {
                Err(self.errorf(format!("can't handle {n} for arg of type {}", t.go_name())))
            }
        }
    }
}

// ---- helpers used by Helm's include/tpl, which run templates from inside a call.

impl State<'_> {
    /// Executes template `name` of this state's set with `dot` (Helm's `include`).
    pub(crate) fn include(&mut self, name: &str, dot: Value) -> Result<String, String> {
        {
            let mut inc = self.included.borrow_mut();
            let c = inc.entry(name.to_string()).or_insert(0);
            if *c > INCLUDE_MAX {
                return Err(format!(
                    "rendering template has a nested reference name: {name}: unable to execute template"
                ));
            }
            *c += 1;
        }
        // Deep include chains (Helm allows 1000 per name) need more stack than a
        // thread has; grow it on demand instead of overflowing.
        let included = self.included.clone();
        let set = self.set;
        let r = stacker::maybe_grow(256 * 1024, 8 * 1024 * 1024, || {
            set.execute_with(name, dot, included)
        });
        if let Some(c) = self.included.borrow_mut().get_mut(name) {
            *c -= 1;
        }
        r.map_err(|e| e.to_string())
    }
}
