//! Evaluation scopes: the values a walk has computed so far (variables,
//! locals, module outputs, resource instances per module instance) and the
//! variable map an expression sees, built only from what it references.
//! Also decodes resource bodies against a provider schema, expanding
//! `dynamic` blocks.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use keel_hcl::convert::convert;
use keel_hcl::diag::{Diagnostic, Diagnostics, Range};
use keel_hcl::syntax::{Body, Expr, RefStep, Reference};
use keel_hcl::{Functions, Kind, Type, Value};

use crate::addr::{Key, ModInst};
use crate::providers::{Nesting, Schema};

/// How a resource or module call expands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expansion {
    Single,
    Count,
    Each,
}

/// The instances of one resource in one module instance.
#[derive(Clone, Debug)]
pub struct ResVal {
    pub expansion: Expansion,
    pub instances: BTreeMap<Key, Value>,
    /// Unknown `count/for_each`: the whole resource is unknown.
    pub unknown: bool,
}

impl ResVal {
    /// The value `type.name` has in expressions.
    pub fn value(&self) -> Value {
        if self.unknown {
            return Value::unknown(Type::Dynamic);
        }
        match self.expansion {
            Expansion::Single => self
                .instances
                .get(&Key::None)
                .cloned()
                .unwrap_or_else(Value::dyn_null),
            Expansion::Count => Value::tuple(self.instances.values().cloned().collect()),
            Expansion::Each => Value::object(
                self.instances
                    .iter()
                    .map(|(k, v)| {
                        (
                            if let Key::Str(s) = k {
                                s.clone()
                            } else {
                                String::new()
                            },
                            v.clone(),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// Values of one module instance.
#[derive(Clone, Debug, Default)]
pub struct ModVals {
    pub vars: BTreeMap<String, Value>,
    pub locals: BTreeMap<String, Value>,
    pub outputs: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, ResVal>,
    /// Module calls: expansion and child instances.
    pub calls: BTreeMap<String, (Expansion, Vec<ModInst>, bool)>,
}

/// Everything a walk has computed.
#[derive(Debug, Default)]
pub struct Store {
    pub mods: HashMap<ModInst, ModVals>,
    /// Config path → its module instances.
    pub expansions: HashMap<Vec<String>, Vec<ModInst>>,
}

/// Per-instance context: `count.index`, `each.key`/`each.value`, `self`.
#[derive(Clone, Debug, Default)]
pub struct InstCtx {
    pub count: Option<i64>,
    pub each: Option<(Value, Value)>,
    pub self_val: Option<Value>,
    /// Extra names (dynamic block iterators, validation's variable).
    pub extra: BTreeMap<String, Value>,
}

/// Fixed facts of the run.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub root_dir: PathBuf,
    pub cwd: PathBuf,
    pub workspace: String,
    pub funcs: Functions,
    /// The root module's `provider` blocks, evaluated (see [`crate::provider_config`]).
    pub provider_configs: BTreeMap<String, Value>,
}

/// terraform's functions, plus those of the built-in `terraform` provider
/// (`provider::NAME::encode_tfvars` ...) under each local name a module of
/// the configuration gives `terraform.io/builtin/terraform`.
pub fn functions_for(root: &crate::config::Module) -> Functions {
    fn walk(m: &crate::config::Module, f: &mut Functions) {
        for (local, src) in &m.required_providers {
            if src == keel_hcl::funcs::tfprovider::SOURCE {
                keel_hcl::funcs::tfprovider::register(f, local);
            }
        }
        for c in m.calls.values() {
            walk(&c.module, f);
        }
    }
    let mut f = Functions::terraform();
    walk(root, &mut f);
    f
}

fn ins(obj: &mut BTreeMap<String, Value>, path: &[&str], v: Value) {
    if path.len() == 1 {
        obj.insert(path[0].to_string(), v);
        return;
    }
    let entry = obj
        .entry(path[0].to_string())
        .or_insert_with(Value::empty_object);
    if let Kind::Object(m) = &mut entry.kind {
        ins(m, &path[1..], v);
    }
}

fn attr(r: &Reference, i: usize) -> Option<&str> {
    match r.steps.get(i) {
        Some(RefStep::Attr(a)) => Some(a),
        _ => None,
    }
}

impl Store {
    /// The variables an expression with references `refs` sees in module instance `mi`.
    pub fn scope(
        &self,
        mi: &ModInst,
        module_dir: &std::path::Path,
        refs: &[Reference],
        ctx: &InstCtx,
        run: &RunInfo,
    ) -> BTreeMap<String, Value> {
        let empty = ModVals::default();
        let mv = self.mods.get(mi).unwrap_or(&empty);
        let mut vars: BTreeMap<String, Value> = BTreeMap::new();
        for r in refs {
            if ctx.extra.contains_key(&r.root) {
                continue;
            }
            match r.root.as_str() {
                "var" => {
                    if let Some(n) = attr(r, 0) {
                        ins(
                            &mut vars,
                            &["var", n],
                            mv.vars
                                .get(n)
                                .cloned()
                                .unwrap_or_else(|| Value::unknown(Type::Dynamic)),
                        );
                    }
                }
                "local" => {
                    if let Some(n) = attr(r, 0) {
                        ins(
                            &mut vars,
                            &["local", n],
                            mv.locals
                                .get(n)
                                .cloned()
                                .unwrap_or_else(|| Value::unknown(Type::Dynamic)),
                        );
                    }
                }
                "module" => {
                    if let Some(n) = attr(r, 0) {
                        ins(&mut vars, &["module", n], self.call_value(mv, n));
                    }
                }
                "data" => {
                    if let (Some(t), Some(n)) = (attr(r, 0), attr(r, 1)) {
                        let key = format!("data.{t}.{n}");
                        ins(
                            &mut vars,
                            &["data", t, n],
                            mv.resources
                                .get(&key)
                                .map_or_else(|| Value::unknown(Type::Dynamic), ResVal::value),
                        );
                    }
                }
                "count" => {
                    if let Some(i) = ctx.count {
                        ins(&mut vars, &["count", "index"], Value::int(i));
                    }
                }
                "each" => {
                    if let Some((k, v)) = &ctx.each {
                        ins(&mut vars, &["each", "key"], k.clone());
                        ins(&mut vars, &["each", "value"], v.clone());
                    }
                }
                "self" => {
                    if let Some(s) = &ctx.self_val {
                        vars.insert("self".into(), s.clone());
                    }
                }
                "path" => {
                    ins(
                        &mut vars,
                        &["path", "module"],
                        Value::string(rel(&run.cwd, module_dir)),
                    );
                    ins(
                        &mut vars,
                        &["path", "root"],
                        Value::string(rel(&run.cwd, &run.root_dir)),
                    );
                    ins(
                        &mut vars,
                        &["path", "cwd"],
                        Value::string(run.cwd.display().to_string()),
                    );
                }
                "terraform" => ins(
                    &mut vars,
                    &["terraform", "workspace"],
                    Value::string(run.workspace.clone()),
                ),
                ty => {
                    if let Some(n) = attr(r, 0) {
                        let key = format!("{ty}.{n}");
                        ins(
                            &mut vars,
                            &[ty, n],
                            mv.resources
                                .get(&key)
                                .map_or_else(|| Value::unknown(Type::Dynamic), ResVal::value),
                        );
                    }
                }
            }
        }
        for (k, v) in &ctx.extra {
            vars.insert(k.clone(), v.clone());
        }
        vars
    }

    pub fn call_value_pub(&self, mv: &ModVals, name: &str) -> Value {
        self.call_value(mv, name)
    }

    fn call_value(&self, mv: &ModVals, name: &str) -> Value {
        let Some((exp, insts, unknown)) = mv.calls.get(name) else {
            return Value::unknown(Type::Dynamic);
        };
        if *unknown {
            return Value::unknown(Type::Dynamic);
        }
        let out = |mi: &ModInst| {
            Value::object(
                self.mods
                    .get(mi)
                    .map(|m| m.outputs.clone())
                    .unwrap_or_default(),
            )
        };
        match exp {
            Expansion::Single => insts.first().map_or_else(Value::empty_object, out),
            Expansion::Count => Value::tuple(insts.iter().map(out).collect()),
            Expansion::Each => Value::object(
                insts
                    .iter()
                    .map(|mi| {
                        (
                            match mi.last().map(|x| &x.1) {
                                Some(Key::Str(s)) => s.clone(),
                                _ => String::new(),
                            },
                            out(mi),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// `path.module` as terraform gives it: relative to the working directory.
fn rel(cwd: &std::path::Path, p: &std::path::Path) -> String {
    match p.strip_prefix(cwd) {
        Ok(r) if r.as_os_str().is_empty() => ".".into(),
        Ok(r) => r.display().to_string(),
        Err(_) => p.display().to_string(),
    }
}

/// Evaluates `e` with `vars`.
pub fn eval(
    e: &Expr,
    vars: &BTreeMap<String, Value>,
    run: &RunInfo,
    dir: &std::path::Path,
) -> Result<Value, Diagnostics> {
    keel_hcl::eval(
        e,
        &keel_hcl::Scope {
            vars,
            funcs: &run.funcs,
            base_dir: dir.to_path_buf(),
        },
    )
}

/// All references in a body (dynamic block iterators excluded).
pub fn body_refs(b: &Body) -> Vec<Reference> {
    let mut out = Vec::new();
    for a in &b.attributes {
        out.extend(a.expr.references());
    }
    for blk in &b.blocks {
        if blk.kind == "dynamic" {
            let iter = blk
                .body
                .attr("iterator")
                .and_then(|a| a.expr.as_keyword().map(str::to_string))
                .or_else(|| blk.labels.first().cloned())
                .unwrap_or_default();
            for a in &blk.body.attributes {
                if a.name != "iterator" {
                    out.extend(a.expr.references());
                }
            }
            for c in blk.body.blocks_of("content") {
                out.extend(body_refs(&c.body).into_iter().filter(|r| r.root != iter));
            }
        } else {
            out.extend(body_refs(&blk.body));
        }
    }
    out
}

fn err(summary: &str, detail: impl Into<String>, r: &Range) -> Diagnostic {
    Diagnostic::error(summary, detail, Some(r.clone()))
}

/// Decodes a resource body against its schema into an object value.
pub fn eval_body(
    b: &Body,
    schema: &Schema,
    vars: &BTreeMap<String, Value>,
    run: &RunInfo,
    dir: &std::path::Path,
) -> Result<Value, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut out = BTreeMap::new();
    for a in &b.attributes {
        let Some(s) = schema.attrs.get(&a.name) else {
            let hint = if schema.blocks.contains_key(&a.name) {
                format!(" Did you mean to define a block of type {:?}?", a.name)
            } else {
                String::new()
            };
            diags.push(err(
                "Unsupported argument",
                format!("An argument named {:?} is not expected here.{hint}", a.name),
                &a.name_range,
            ));
            continue;
        };
        if s.computed && !s.optional && !s.required {
            diags.push(err("Value for unconfigurable attribute", format!("Can't configure a value for {:?}: its value will be decided automatically based on the result of applying this configuration.", a.name), &a.name_range));
            continue;
        }
        match eval(&a.expr, vars, run, dir) {
            Ok(v) => match convert(&v, &s.ty) {
                Ok(v) => {
                    out.insert(a.name.clone(), v);
                }
                Err(e) => diags.push(err(
                    "Incorrect attribute value type",
                    format!("Inappropriate value for attribute {:?}: {e}.", a.name),
                    a.expr.range(),
                )),
            },
            Err(d) => diags.extend(d),
        }
    }
    for (k, s) in &schema.attrs {
        if s.required && !out.contains_key(k) && !b.attributes.iter().any(|a| &a.name == k) {
            diags.push(err(
                "Missing required argument",
                format!("The argument {k:?} is required, but no definition was found."),
                &b.range,
            ));
        }
        out.entry(k.clone())
            .or_insert_with(|| Value::null(s.ty.clone()));
    }
    let mut blocks: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for blk in &b.blocks {
        if blk.kind == "dynamic" {
            let kind = blk.labels.first().cloned().unwrap_or_default();
            let Some(nb) = schema.blocks.get(&kind) else {
                diags.push(err(
                    "Unsupported block type",
                    format!("Blocks of type {kind:?} are not expected here."),
                    &blk.type_range,
                ));
                continue;
            };
            match expand_dynamic(blk, &nb.block, vars, run, dir) {
                Ok(vs) => blocks.entry(kind).or_default().extend(vs),
                Err(d) => diags.extend(d),
            }
            continue;
        }
        let Some(nb) = schema.blocks.get(&blk.kind) else {
            diags.push(err(
                "Unsupported block type",
                format!("Blocks of type {:?} are not expected here.", blk.kind),
                &blk.type_range,
            ));
            continue;
        };
        match eval_body(&blk.body, &nb.block, vars, run, dir) {
            Ok(v) => blocks.entry(blk.kind.clone()).or_default().push(v),
            Err(d) => diags.extend(d),
        }
    }
    for (k, nb) in &schema.blocks {
        let items = blocks.remove(k).unwrap_or_default();
        let t = nb.block.implied_type();
        let v = match nb.nesting {
            Nesting::Single => items.into_iter().next().unwrap_or_else(|| Value::null(t)),
            Nesting::List => Value::list(t, items),
            Nesting::Set => Value::set(t, items),
        };
        out.insert(k.clone(), v);
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(Value::object(out))
    }
}

fn expand_dynamic(
    blk: &keel_hcl::Block,
    schema: &Schema,
    vars: &BTreeMap<String, Value>,
    run: &RunInfo,
    dir: &std::path::Path,
) -> Result<Vec<Value>, Diagnostics> {
    let kind = blk.labels.first().cloned().unwrap_or_default();
    let iter = blk
        .body
        .attr("iterator")
        .and_then(|a| a.expr.as_keyword().map(str::to_string))
        .unwrap_or_else(|| kind.clone());
    let fe = blk.body.attr("for_each").ok_or_else(|| {
        Diagnostics::from(err(
            "Missing required argument",
            "The argument \"for_each\" is required, but no definition was found.",
            &blk.range,
        ))
    })?;
    let coll = eval(&fe.expr, vars, run, dir)?;
    let content = blk.body.blocks_of("content").next().ok_or_else(|| Diagnostics::from(err("Missing content block", "A dynamic block must have a nested block of type \"content\" to describe the body of each generated block.", &blk.range)))?;
    if !coll.is_known() {
        return Ok(vec![Value::unknown(schema.implied_type())]);
    }
    let items = keel_hcl::eval::iter_items(&coll).ok_or_else(|| {
        Diagnostics::from(err(
            "Invalid dynamic for_each value",
            format!(
                "Cannot use a {} value in for_each. An iterable collection is required.",
                coll.ty().friendly()
            ),
            fe.expr.range(),
        ))
    })?;
    let mut out = Vec::new();
    for (k, v) in items {
        let mut inner = vars.clone();
        inner.insert(
            iter.clone(),
            Value::object(BTreeMap::from([
                ("key".to_string(), k),
                ("value".to_string(), v),
            ])),
        );
        out.push(eval_body(&content.body, schema, &inner, run, dir)?);
    }
    Ok(out)
}
