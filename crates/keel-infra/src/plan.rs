//! Planning: walks the graph, expands `count/for_each` and module calls,
//! evaluates every resource instance's configuration, refreshes its prior
//! state and asks its provider for the planned new state; the differences
//! become [`Change`]s. Apply re-runs the same walk with known values.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use keel_hcl::convert::convert;
use keel_hcl::diag::Diagnostics;
use keel_hcl::{Type, Value};

use crate::addr::{Key, ModInst, config_path, instance_addr, module_prefix, resource_addr};
use crate::config::{IgnoreChanges, Mode, Module, Resource, Rule};
use crate::graph::{Graph, NodeKind, module_at};
use crate::providers::{Providers, ResourceType, Schema};
use crate::scope::{Expansion, InstCtx, ResVal, RunInfo, Store, eval, eval_body};
use crate::state::{InstanceState, ResourceState, StateFile, apply_sensitive, decode_attr};

/// What happens to one resource instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    NoOp,
    Create,
    Read,
    Update,
    /// Replacement; `true` when the new object is created first.
    Replace(bool),
    Delete,
    Forget,
}

/// A planned change of one resource instance.
#[derive(Clone, Debug)]
pub struct Change {
    pub module: ModInst,
    pub mode: Mode,
    pub ty: String,
    pub name: String,
    pub key: Key,
    pub action: Action,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub replace_paths: Vec<String>,
    /// Why (terraform's `action_reason`), in the words its plan prints.
    pub reason: Option<String>,
    pub provider: String,
    pub expansion: Expansion,
    pub deps: Vec<String>,
    pub moved_from: Option<String>,
    pub importing: Option<String>,
}

impl Change {
    pub fn res_key(&self) -> String {
        match self.mode {
            Mode::Managed => format!("{}.{}", self.ty, self.name),
            Mode::Data => format!("data.{}.{}", self.ty, self.name),
        }
    }
    pub fn addr(&self) -> String {
        instance_addr(&self.module, &self.res_key(), &self.key)
    }
}

/// A root output's change.
#[derive(Clone, Debug)]
pub struct OutputChange {
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub sensitive: bool,
}

/// The result of planning.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub outputs: BTreeMap<String, OutputChange>,
    /// Outputs of module instances below the root whose value is not null:
    /// terraform keeps no prior value for them, so it plans each as created
    /// (they feed `relevant_attributes`).
    pub module_outputs: Vec<(ModInst, String)>,
    pub destroy: bool,
    pub refresh_only: bool,
    pub warnings: Diagnostics,
    pub variables: BTreeMap<String, Value>,
    /// Prior state's lineage and serial, to refuse a stale saved plan.
    pub lineage: String,
    pub serial: u64,
}

impl Plan {
    pub fn counts(&self) -> (usize, usize, usize, usize, usize) {
        let (mut add, mut change, mut destroy, mut import, mut forget) = (0, 0, 0, 0, 0);
        for c in &self.changes {
            if c.mode == Mode::Data {
                continue;
            }
            if c.importing.is_some() {
                import += 1;
            }
            match c.action {
                Action::Create => add += 1,
                Action::Update => change += 1,
                Action::Replace(_) => {
                    add += 1;
                    destroy += 1;
                }
                Action::Delete => destroy += 1,
                Action::Forget => forget += 1,
                Action::NoOp | Action::Read => {}
            }
        }
        (add, change, destroy, import, forget)
    }

    pub fn has_changes(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.mode == Mode::Managed && c.action != Action::NoOp)
            || self
                .outputs
                .values()
                .any(|o| !same_opt(o.before.as_ref(), o.after.as_ref()))
    }
}

fn same_opt(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.raw_equals(y) && x.sensitive == y.sensitive,
        (None, None) => true,
        _ => false,
    }
}

/// Options of plan and apply.
#[derive(Clone, Debug)]
pub struct Options {
    pub destroy: bool,
    pub refresh: bool,
    pub refresh_only: bool,
    pub parallelism: usize,
    pub targets: Vec<crate::addr::InstAddr>,
    pub replace: Vec<crate::addr::InstAddr>,
    /// Root module input values, already parsed (from -var, files, environment).
    pub inputs: BTreeMap<String, Value>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            destroy: false,
            refresh: true,
            refresh_only: false,
            parallelism: 10,
            targets: Vec::new(),
            replace: Vec::new(),
            inputs: BTreeMap::new(),
        }
    }
}

/// Prior instances indexed by (module prefix, resource key).
pub type PriorIndex = HashMap<(String, String), (ResourceState, BTreeMap<Key, InstanceState>)>;

pub fn index_state(s: &StateFile) -> PriorIndex {
    let mut out = HashMap::new();
    for r in &s.resources {
        let key = if r.mode == "data" {
            format!("data.{}.{}", r.ty, r.name)
        } else {
            format!("{}.{}", r.ty, r.name)
        };
        let insts: BTreeMap<Key, InstanceState> = r
            .instances
            .iter()
            .filter(|i| i.deposed.is_none())
            .map(|i| (Key::from_json(i.index_key.as_ref()), i.clone()))
            .collect();
        out.insert(
            (r.module.clone().unwrap_or_default(), key),
            (r.clone(), insts),
        );
    }
    out
}

/// What the walk shares between threads.
pub(crate) struct Walk<'a> {
    pub root: &'a Module,
    pub graph: &'a Graph,
    pub providers: &'a Providers,
    pub run: &'a RunInfo,
    pub opts: &'a Options,
    pub prior: PriorIndex,
    pub store: Mutex<Store>,
    pub changes: Mutex<Vec<Change>>,
    pub warnings: Mutex<Diagnostics>,
    pub claimed: Mutex<HashSet<(String, String, Key)>>,
    pub outputs: Mutex<BTreeMap<String, Value>>,
    /// Apply mode: performs each change as it is planned.
    pub applier: Option<
        Arc<
            dyn Fn(&Change, &dyn ResourceType, &Schema) -> Result<Value, Diagnostics>
                + Send
                + Sync
                + 'a,
        >,
    >,
    pub data_reader: bool,
}

fn diag(summary: &str, detail: impl Into<String>, r: &keel_hcl::Range) -> Diagnostics {
    Diagnostics::error(summary, detail, Some(r.clone()))
}

pub fn provider_addr(providers: &Providers, ty: &str, alias: Option<&str>) -> String {
    let addr = providers.for_type(ty).map_or_else(
        || {
            format!(
                "registry.terraform.io/hashicorp/{}",
                ty.split('_').next().unwrap_or(ty)
            )
        },
        |p| p.address.to_string(),
    );
    match alias {
        Some(a) => format!("provider[\"{addr}\"].{a}"),
        None => format!("provider[\"{addr}\"]"),
    }
}

impl<'a> Walk<'a> {
    pub(crate) fn new(
        root: &'a Module,
        graph: &'a Graph,
        providers: &'a Providers,
        run: &'a RunInfo,
        opts: &'a Options,
        prior: PriorIndex,
    ) -> Self {
        let mut store = Store::default();
        store.expansions.insert(Vec::new(), vec![Vec::new()]);
        store
            .mods
            .insert(Vec::new(), crate::scope::ModVals::default());
        Walk {
            root,
            graph,
            providers,
            run,
            opts,
            prior,
            store: Mutex::new(store),
            changes: Mutex::new(Vec::new()),
            warnings: Mutex::new(Diagnostics::new()),
            claimed: Mutex::new(HashSet::new()),
            outputs: Mutex::new(BTreeMap::new()),
            applier: None,
            data_reader: true,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn instances_of(&self, path: &[String]) -> Vec<ModInst> {
        self.lock()
            .expansions
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    fn op_ctx(&self, r: &Resource) -> crate::providers::OpCtx {
        let (name, alias) = match &r.provider {
            Some((n, a)) => (Some(n.as_str()), a.as_deref()),
            None => (None, None),
        };
        crate::providers::OpCtx::for_resource(self.run, &r.ty, name, alias)
    }

    fn vars_for(
        &self,
        mi: &ModInst,
        dir: &std::path::Path,
        refs: &[keel_hcl::syntax::Reference],
        ctx: &InstCtx,
    ) -> BTreeMap<String, Value> {
        self.lock().scope(mi, dir, refs, ctx, self.run)
    }

    /// Runs one graph node.
    pub(crate) fn node(&self, i: usize) -> Result<(), Diagnostics> {
        let n = &self.graph.nodes[i];
        let m = module_at(self.root, &n.path);
        for mi in self.instances_of(&n.path) {
            match &n.kind {
                NodeKind::Call(c) => self.call(m, &mi, c)?,
                NodeKind::Var(x) => self.variable(m, &mi, x)?,
                NodeKind::Local(x) => {
                    let e = &m.locals[x].expr;
                    let vars = self.vars_for(&mi, &m.dir, &e.references(), &InstCtx::default());
                    let v = eval(e, &vars, self.run, &m.dir)?;
                    self.lock()
                        .mods
                        .entry(mi.clone())
                        .or_default()
                        .locals
                        .insert(x.clone(), v);
                }
                NodeKind::Output(x) => self.output(m, &mi, x)?,
                NodeKind::Res(k) => self.resource(m, &mi, &m.resources[k], i)?,
            }
        }
        Ok(())
    }

    fn expand(
        &self,
        count: Option<&keel_hcl::Expr>,
        for_each: Option<&keel_hcl::Expr>,
        vars: &BTreeMap<String, Value>,
        dir: &std::path::Path,
    ) -> Result<(Expansion, Option<Vec<(Key, Option<Value>)>>), Diagnostics> {
        if let Some(c) = count {
            let v = eval(c, vars, self.run, dir)?;
            if !v.is_known() {
                return Ok((Expansion::Count, None));
            }
            let n = convert(&v, &Type::Number)
                .ok()
                .and_then(|v| v.as_number().and_then(keel_hcl::Number::to_i64));
            let n = match n {
                Some(n) if n >= 0 && !v.is_null() => n,
                _ => {
                    return Err(diag(
                        "Invalid count argument",
                        "The given \"count\" argument value is unsuitable: must be a whole number greater than or equal to zero.",
                        c.range(),
                    ));
                }
            };
            return Ok((
                Expansion::Count,
                Some((0..n).map(|i| (Key::Int(i), None)).collect()),
            ));
        }
        if let Some(f) = for_each {
            let v = eval(f, vars, self.run, dir)?;
            if v.sensitive {
                return Err(diag(
                    "Invalid for_each argument",
                    "Sensitive values, or values derived from sensitive values, cannot be used as for_each arguments. If used, the sensitive value could be exposed as a resource instance key.",
                    f.range(),
                ));
            }
            if !v.is_known() {
                return Ok((Expansion::Each, None));
            }
            if v.is_null() {
                return Err(diag(
                    "Invalid for_each argument",
                    "The given \"for_each\" argument value is null. A map, or set of strings is allowed.",
                    f.range(),
                ));
            }
            let items: Vec<(Key, Option<Value>)> = match &v.kind {
                keel_hcl::Kind::Map(_, m) | keel_hcl::Kind::Object(m) => m
                    .iter()
                    .map(|(k, x)| (Key::Str(k.clone()), Some(x.clone())))
                    .collect(),
                keel_hcl::Kind::Set(Type::String | Type::Dynamic, e) => {
                    let mut out = Vec::new();
                    for x in e {
                        if !x.is_known() {
                            return Ok((Expansion::Each, None));
                        }
                        match x.as_str() {
                            Some(s) => out.push((Key::Str(s.to_string()), Some(x.clone()))),
                            None => {
                                return Err(diag(
                                    "Invalid for_each set argument",
                                    "The given \"for_each\" argument value is unsuitable: \"for_each\" supports sets of strings, but you have provided a set containing type null.",
                                    f.range(),
                                ));
                            }
                        }
                    }
                    out
                }
                _ => {
                    return Err(diag(
                        "Invalid for_each argument",
                        format!(
                            "The given \"for_each\" argument value is unsuitable: the \"for_each\" argument must be a map, or set of strings, and you have provided a value of type {}.",
                            v.ty().friendly()
                        ),
                        f.range(),
                    ));
                }
            };
            return Ok((Expansion::Each, Some(items)));
        }
        Ok((Expansion::Single, Some(vec![(Key::None, None)])))
    }

    fn call(&self, m: &Module, mi: &ModInst, c: &str) -> Result<(), Diagnostics> {
        let call = &m.calls[c];
        let mut refs = Vec::new();
        for e in call.count.iter().chain(call.for_each.iter()) {
            refs.extend(e.references());
        }
        let vars = self.vars_for(mi, &m.dir, &refs, &InstCtx::default());
        let (exp, keys) =
            self.expand(call.count.as_ref(), call.for_each.as_ref(), &vars, &m.dir)?;
        let Some(keys) = keys else {
            return Err(diag(
                "Invalid module instance count",
                "The number of instances of this module depends on values that cannot be determined until apply.",
                &call.range,
            ));
        };
        let mut child_path = config_path(mi);
        child_path.push(c.to_string());
        let mut st = self.lock();
        let mut insts = Vec::new();
        for (k, each) in keys {
            let mut child = mi.clone();
            child.push((c.to_string(), k.clone()));
            let mv = st.mods.entry(child.clone()).or_default();
            // The call's instance context, for its arguments.
            mv.vars.insert(
                "\u{0}count".into(),
                if let Key::Int(i) = k {
                    Value::int(i)
                } else {
                    Value::dyn_null()
                },
            );
            if let Some(v) = each {
                mv.vars
                    .insert("\u{0}each".into(), Value::tuple(vec![k.value(), v]));
            }
            insts.push(child);
        }
        st.expansions
            .entry(child_path)
            .or_default()
            .extend(insts.iter().cloned());
        st.mods
            .entry(mi.clone())
            .or_default()
            .calls
            .insert(c.to_string(), (exp, insts, false));
        Ok(())
    }

    fn variable(&self, m: &Module, mi: &ModInst, x: &str) -> Result<(), Diagnostics> {
        let v = &m.variables[x];
        let raw: Option<Value> = if let Some((last, parent)) = mi.split_last() {
            let pm = module_at(self.root, &config_path(&parent.to_vec()));
            let call = &pm.calls[&last.0];
            match call.inputs.get(x) {
                Some(a) => {
                    let (count, each) = {
                        let st = self.lock();

                        st.mods
                            .get(mi)
                            .map(|mv| {
                                (
                                    mv.vars.get("\u{0}count").cloned(),
                                    mv.vars.get("\u{0}each").cloned(),
                                )
                            })
                            .unwrap_or_default()
                    };
                    let ctx = InstCtx {
                        count: count.and_then(|c| c.as_number().and_then(keel_hcl::Number::to_i64)),
                        each: each.and_then(|e| e.as_seq().map(|s| (s[0].clone(), s[1].clone()))),
                        ..InstCtx::default()
                    };
                    let vars = self.vars_for(&parent.to_vec(), &pm.dir, &a.expr.references(), &ctx);
                    Some(eval(&a.expr, &vars, self.run, &pm.dir)?)
                }
                None => None,
            }
        } else {
            self.opts.inputs.get(x).cloned()
        };
        let val = match raw {
            Some(r) if !r.is_null() || v.nullable => r,
            _ => match &v.default {
                Some(d) => {
                    let vars = self.vars_for(mi, &m.dir, &d.references(), &InstCtx::default());
                    eval(d, &vars, self.run, &m.dir)?
                }
                None if mi.is_empty() => {
                    return Err(Diagnostics::error(
                        "No value for required variable",
                        format!(
                            "The root module input variable {x:?} is not set, and has no default value. Use a -var or -var-file command line argument to provide a value for this variable."
                        ),
                        Some(v.range.clone()),
                    ));
                }
                None => Value::null(v.ty.clone()),
            },
        };
        let val = v.defaults.apply(&val);
        let val = convert(&val, &v.ty).map_err(|e| {
            Diagnostics::error(
                "Invalid value for input variable",
                format!(
                    "The given value is not suitable for var.{x} declared at {}: {e}.",
                    v.range
                ),
                Some(v.range.clone()),
            )
        })?;
        if val.is_null() && !v.nullable {
            return Err(Diagnostics::error(
                "Required variable not set",
                format!(
                    "Unsuitable value for var.{x} set using an interactive prompt: required variable may not be set to null."
                ),
                Some(v.range.clone()),
            ));
        }
        let val = val.mark(v.sensitive);
        for rule in &v.validations {
            let mut ctx = InstCtx::default();
            let mut refs = rule.condition.references();
            if let Some(e) = &rule.error_message {
                refs.extend(e.references());
            }
            let mut vars = self.vars_for(mi, &m.dir, &refs, &ctx);
            if let Some(keel_hcl::Kind::Object(o)) = vars.get_mut("var").map(|x| &mut x.kind) {
                o.insert(x.to_string(), val.clone());
            } else {
                ctx.extra.insert(
                    "var".into(),
                    Value::object(BTreeMap::from([(x.to_string(), val.clone())])),
                );
                vars.extend(ctx.extra.clone());
            }
            check_rule(
                rule,
                &vars,
                self.run,
                &m.dir,
                "Invalid value for variable",
                &format!("var.{x}"),
            )?;
        }
        self.lock()
            .mods
            .entry(mi.clone())
            .or_default()
            .vars
            .insert(x.to_string(), val);
        Ok(())
    }

    fn output(&self, m: &Module, mi: &ModInst, x: &str) -> Result<(), Diagnostics> {
        let o = &m.outputs[x];
        for p in &o.preconditions {
            let mut refs = p.condition.references();
            if let Some(e) = &p.error_message {
                refs.extend(e.references());
            }
            let vars = self.vars_for(mi, &m.dir, &refs, &InstCtx::default());
            check_rule(
                p,
                &vars,
                self.run,
                &m.dir,
                "Module output value precondition failed",
                "",
            )?;
        }
        let vars = self.vars_for(mi, &m.dir, &o.expr.references(), &InstCtx::default());
        let v = eval(&o.expr, &vars, self.run, &m.dir)?;
        if mi.is_empty() && v.has_sensitive() && !o.sensitive && v.is_wholly_known() {
            return Err(Diagnostics::error(
                "Output refers to sensitive values",
                "To reduce the risk of accidentally exporting sensitive data that was intended to be only internal, Terraform requires that any root module output containing sensitive data be explicitly marked as sensitive, to confirm your intent.\n\nIf you do intend to export this data, annotate the output value as sensitive by adding the following argument:\n    sensitive = true",
                Some(o.range.clone()),
            ));
        }
        let v = v.mark(o.sensitive);
        if mi.is_empty() {
            self.outputs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(x.to_string(), v.clone());
        }
        self.lock()
            .mods
            .entry(mi.clone())
            .or_default()
            .outputs
            .insert(x.to_string(), v);
        Ok(())
    }

    fn resource(
        &self,
        m: &Module,
        mi: &ModInst,
        r: &Resource,
        node: usize,
    ) -> Result<(), Diagnostics> {
        let key = r.key();
        let prefix = module_prefix(mi);
        let provider = provider_addr(
            self.providers,
            &r.ty,
            r.provider.as_ref().and_then(|p| p.1.as_deref()),
        );
        let mut refs = Vec::new();
        for e in r.count.iter().chain(r.for_each.iter()) {
            refs.extend(e.references());
        }
        let vars = self.vars_for(mi, &m.dir, &refs, &InstCtx::default());
        let (exp, keys) = self.expand(r.count.as_ref(), r.for_each.as_ref(), &vars, &m.dir)?;
        let prior = self.prior.get(&(prefix.clone(), key.clone()));
        let deps: Vec<String> = self
            .graph
            .res_deps
            .get(&node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let Some(keys) = keys else {
            if self.applier.is_some() {
                return Err(diag(
                    "Invalid count argument",
                    "The count or for_each value depends on resource attributes that cannot be determined until apply.",
                    &r.range,
                ));
            }
            self.lock()
                .mods
                .entry(mi.clone())
                .or_default()
                .resources
                .insert(
                    key.clone(),
                    ResVal {
                        expansion: exp,
                        instances: BTreeMap::new(),
                        unknown: true,
                    },
                );
            // Unknown expansion: keep every prior instance claimed, plan nothing for them.
            if let Some((_, insts)) = prior {
                let mut c = self
                    .claimed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for k in insts.keys() {
                    c.insert((prefix.clone(), key.clone(), k.clone()));
                }
            }
            return Ok(());
        };
        let body_refs = crate::scope::body_refs(&r.body);
        let mut instances = BTreeMap::new();
        let mut diags = Diagnostics::new();
        for (k, each) in keys {
            let ctx = InstCtx {
                count: if let Key::Int(i) = k { Some(i) } else { None },
                each: each.clone().map(|v| (k.value(), v)),
                ..InstCtx::default()
            };
            self.claimed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((prefix.clone(), key.clone(), k.clone()));
            let prior_inst = prior.and_then(|(_, insts)| insts.get(&k));
            match self.instance(
                m, mi, r, &k, &ctx, &body_refs, prior_inst, &provider, exp, &deps,
            ) {
                Ok(v) => {
                    instances.insert(k, v);
                }
                Err(d) => diags.extend(d),
            }
        }
        // Prior instances no longer in the expansion.
        if let Some((_, insts)) = prior {
            for (k, inst) in insts {
                if instances.contains_key(k) || r.mode == Mode::Data {
                    continue;
                }
                let reason = match (&k, exp) {
                    (Key::Int(i), Expansion::Count) => {
                        format!("because index [{i}] is out of range for count")
                    }
                    (Key::Str(s), Expansion::Each) => format!(
                        "because key [{}] is not in for_each map",
                        keel_hcl::render::go_quote(s)
                    ),
                    (Key::None, _) => format!(
                        "because resource uses {}",
                        if exp == Expansion::Count {
                            "count"
                        } else {
                            "for_each"
                        }
                    ),
                    (_, Expansion::Single) => {
                        "because resource does not use count or for_each".to_string()
                    }
                    _ => "because the instance key is no longer valid".to_string(),
                };
                self.claimed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert((prefix.clone(), key.clone(), k.clone()));
                self.orphan(mi, r, k, inst, &provider, Some(reason))?;
            }
        }
        self.lock()
            .mods
            .entry(mi.clone())
            .or_default()
            .resources
            .insert(
                key,
                ResVal {
                    expansion: exp,
                    instances,
                    unknown: false,
                },
            );
        if diags.has_errors() {
            Err(diags)
        } else {
            Ok(())
        }
    }

    pub(crate) fn decode_prior(
        &self,
        ty: &str,
        mode: Mode,
        inst: &InstanceState,
    ) -> Result<Value, Diagnostics> {
        let schema = match mode {
            Mode::Managed => self.providers.resource(ty).map(|r| r.schema().clone()),
            Mode::Data => self.providers.data(ty).map(|r| r.schema().clone()),
        };
        let Some(schema) = schema else {
            return Err(no_provider(ty));
        };
        let v = decode_attr(&inst.attributes, &schema.implied_type()).map_err(|e| {
            Diagnostics::error(
                "Invalid resource state",
                format!("The state of {ty} does not match its schema: {e}."),
                None,
            )
        })?;
        Ok(apply_sensitive(v, &inst.sensitive_attributes))
    }

    fn orphan(
        &self,
        mi: &ModInst,
        r: &Resource,
        k: &Key,
        inst: &InstanceState,
        provider: &str,
        reason: Option<String>,
    ) -> Result<(), Diagnostics> {
        if r.lifecycle.prevent_destroy {
            return Err(diag(
                "Instance cannot be destroyed",
                format!(
                    "Resource {} has lifecycle.prevent_destroy set, but the plan calls for this resource to be destroyed. To avoid this error and continue with the plan, either disable lifecycle.prevent_destroy or reduce the scope of the plan using the -target option.",
                    instance_addr(mi, &r.key(), k)
                ),
                &r.range,
            ));
        }
        let before = self.decode_prior(&r.ty, r.mode, inst)?;
        self.push_change(Change {
            module: mi.clone(),
            mode: r.mode,
            ty: r.ty.clone(),
            name: r.name.clone(),
            key: k.clone(),
            action: Action::Delete,
            before: Some(before),
            after: None,
            replace_paths: Vec::new(),
            reason,
            provider: provider.to_string(),
            expansion: Expansion::Single,
            deps: inst.dependencies.clone(),
            moved_from: None,
            importing: None,
        });
        Ok(())
    }

    fn push_change(&self, c: Change) {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(c);
    }

    #[allow(clippy::too_many_arguments)]
    fn instance(
        &self,
        m: &Module,
        mi: &ModInst,
        r: &Resource,
        k: &Key,
        ctx: &InstCtx,
        body_refs: &[keel_hcl::syntax::Reference],
        prior: Option<&InstanceState>,
        provider: &str,
        exp: Expansion,
        deps: &[String],
    ) -> Result<Value, Diagnostics> {
        let addr = instance_addr(mi, &r.key(), k);
        let vars = self.vars_for(mi, &m.dir, body_refs, ctx);
        for p in &r.lifecycle.preconditions {
            let mut refs = p.condition.references();
            if let Some(e) = &p.error_message {
                refs.extend(e.references());
            }
            let v = self.vars_for(mi, &m.dir, &refs, ctx);
            check_rule(
                p,
                &v,
                self.run,
                &m.dir,
                "Resource precondition failed",
                &addr,
            )?;
        }
        let mk = |action: Action,
                  before: Option<Value>,
                  after: Option<Value>,
                  replace_paths: Vec<String>,
                  reason: Option<String>| Change {
            module: mi.clone(),
            mode: r.mode,
            ty: r.ty.clone(),
            name: r.name.clone(),
            key: k.clone(),
            action,
            before,
            after,
            replace_paths,
            reason,
            provider: provider.to_string(),
            expansion: exp,
            deps: deps.to_vec(),
            moved_from: None,
            importing: None,
        };
        if r.mode == Mode::Data {
            let dt = self
                .providers
                .data(&r.ty)
                .ok_or_else(|| no_provider(&r.ty))?;
            let config = eval_body(&r.body, dt.schema(), &vars, self.run, &m.dir)?;
            let pending_dep =
                !r.depends_on.is_empty() && self.applier.is_none() && self.has_pending(deps);
            if !config.is_wholly_known() || pending_dep || !self.data_reader {
                let after = crate::providers::plan_generic(dt.schema(), None, &config).value;
                self.push_change(mk(
                    Action::Read,
                    None,
                    Some(after.clone()),
                    Vec::new(),
                    Some(if pending_dep {
                        "because it depends on pending changes".into()
                    } else {
                        "because its configuration depends on values not yet known".into()
                    }),
                ));
                return Ok(after);
            }
            let ctx = self.op_ctx(r);
            let v = dt.read(&config, &ctx).map_err(|e| {
                Diagnostics::error(format!("Error reading {}", r.ty), e, Some(r.range.clone()))
            })?;
            return Ok(mark_schema(v, dt.schema()));
        }
        let rt = self
            .providers
            .resource(&r.ty)
            .ok_or_else(|| no_provider(&r.ty))?;
        let schema = rt.schema().clone();
        let mut config = eval_body(&r.body, &schema, &vars, self.run, &m.dir)?;
        let op = self.op_ctx(r);
        let mut before = match prior {
            Some(p) => Some(self.decode_prior(&r.ty, r.mode, p)?),
            None => None,
        };
        if self.opts.refresh
            && let Some(b) = &before
        {
            before = rt.read(b, &op).map_err(|e| {
                Diagnostics::error("Error refreshing state", e, Some(r.range.clone()))
            })?;
        }
        if let (Some(b), IgnoreChanges::Attrs(names)) = (&before, &r.lifecycle.ignore_changes) {
            for n in names {
                if let Some(x) = crate::providers::get(b, n)
                    .cloned()
                    .or_else(|| b.as_map().and_then(|o| o.get(n)).cloned())
                {
                    crate::providers::set(&mut config, n, x);
                }
            }
        }
        if self.opts.refresh_only {
            let v = before
                .clone()
                .unwrap_or_else(|| Value::unknown(schema.implied_type()));
            self.push_change(mk(Action::NoOp, before.clone(), before, Vec::new(), None));
            return Ok(v);
        }
        let mut planned =
            crate::providers::builtin::plan_with(rt.as_ref(), before.as_ref(), &config).map_err(
                |e| Diagnostics::error("Provider produced invalid plan", e, Some(r.range.clone())),
            )?;
        if matches!(r.lifecycle.ignore_changes, IgnoreChanges::All)
            && let Some(b) = &before
        {
            planned.value = b.clone();
            planned.requires_replace.clear();
        }
        let mut reason = None;
        let forced = self.opts.replace.iter().any(|a| {
            a.to_string() == addr || (a.key.is_none() && a.module == *mi && a.res_key == r.key())
        });
        if forced && before.is_some() {
            reason = Some("because of -replace option".to_string());
        }
        if !forced
            && before.is_some()
            && !r.lifecycle.replace_triggered_by.is_empty()
            && self.replace_triggered(m, mi, r, ctx)?
        {
            reason = Some("due to changes in replace_triggered_by".to_string());
        }
        let cbd = r.lifecycle.create_before_destroy;
        let (action, after) = match &before {
            None => (Action::Create, planned.value),
            Some(b) => {
                if !planned.requires_replace.is_empty() || reason.is_some() {
                    let fresh = crate::providers::builtin::plan_with(rt.as_ref(), None, &config)
                        .map_err(|e| {
                            Diagnostics::error(
                                "Provider produced invalid plan",
                                e,
                                Some(r.range.clone()),
                            )
                        })?;
                    (Action::Replace(cbd), fresh.value)
                } else if planned.value.raw_equals(b) && same_marks(&planned.value, b) {
                    (Action::NoOp, planned.value)
                } else {
                    (Action::Update, planned.value)
                }
            }
        };
        if r.lifecycle.prevent_destroy && matches!(action, Action::Replace(_)) {
            return Err(diag(
                "Instance cannot be destroyed",
                format!(
                    "Resource {addr} has lifecycle.prevent_destroy set, but the plan calls for this resource to be destroyed. To avoid this error and continue with the plan, either disable lifecycle.prevent_destroy or reduce the scope of the plan using the -target option."
                ),
                &r.range,
            ));
        }
        let replace_paths = if matches!(action, Action::Replace(_)) {
            planned.requires_replace
        } else {
            Vec::new()
        };
        let mut change = mk(action, before, Some(after.clone()), replace_paths, reason);
        let result = match &self.applier {
            Some(apply) => {
                let v = apply(&change, rt.as_ref(), &schema)?;
                change.after = Some(v.clone());
                v
            }
            None => after,
        };
        for p in &r.lifecycle.postconditions {
            let mut refs = p.condition.references();
            if let Some(e) = &p.error_message {
                refs.extend(e.references());
            }
            let c2 = InstCtx {
                self_val: Some(result.clone()),
                ..ctx.clone()
            };
            let v = self.vars_for(mi, &m.dir, &refs, &c2);
            check_rule(
                p,
                &v,
                self.run,
                &m.dir,
                "Resource postcondition failed",
                &addr,
            )?;
        }
        if self.applier.is_none() {
            self.push_change(change);
        }
        Ok(result)
    }

    fn has_pending(&self, deps: &[String]) -> bool {
        let ch = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ch.iter().any(|c| {
            c.action != Action::NoOp
                && c.mode == Mode::Managed
                && deps.contains(&resource_addr(&c.module, &c.res_key()))
        })
    }

    fn replace_triggered(
        &self,
        m: &Module,
        mi: &ModInst,
        r: &Resource,
        ctx: &InstCtx,
    ) -> Result<bool, Diagnostics> {
        let ch = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for e in &r.lifecycle.replace_triggered_by {
            for rf in e.references() {
                if matches!(
                    rf.root.as_str(),
                    "count" | "each" | "var" | "local" | "path" | "module" | "data"
                ) {
                    continue;
                }
                let Some(keel_hcl::syntax::RefStep::Attr(name)) = rf.steps.first() else {
                    continue;
                };
                let key = format!("{}.{}", rf.root, name);
                // The instance referenced: an index step if static, each.key/count.index if used.
                let idx = match rf.steps.get(1) {
                    Some(keel_hcl::syntax::RefStep::Index(i)) => Some(Key::Int(*i)),
                    Some(keel_hcl::syntax::RefStep::Key(s)) => Some(Key::Str(s.clone())),
                    _ => None,
                };
                let idx = idx
                    .or_else(|| {
                        if e.references().iter().any(|x| x.root == "each") {
                            ctx.each.as_ref().and_then(|(k, _)| Key::from_value(k))
                        } else {
                            None
                        }
                    })
                    .or_else(|| {
                        ctx.count
                            .map(Key::Int)
                            .filter(|_| e.references().iter().any(|x| x.root == "count"))
                    });
                let hit = ch.iter().any(|c| {
                    c.module == *mi
                        && c.res_key() == key
                        && matches!(
                            c.action,
                            Action::Update | Action::Replace(_) | Action::Create
                        )
                        && idx.as_ref().is_none_or(|i| *i == c.key)
                });
                let _ = m;
                if hit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

fn same_marks(a: &Value, b: &Value) -> bool {
    a.sensitive == b.sensitive
        && a.children()
            .zip(b.children())
            .all(|(x, y)| same_marks(x, y))
}

/// Marks a data source's sensitive attributes.
pub fn mark_schema(mut v: Value, schema: &Schema) -> Value {
    if let keel_hcl::Kind::Object(m) = &mut v.kind {
        for (k, a) in &schema.attrs {
            if a.sensitive
                && let Some(x) = m.get_mut(k)
            {
                x.sensitive = true;
            }
        }
    }
    v
}

pub(crate) fn no_provider(ty: &str) -> Diagnostics {
    Diagnostics::error(
        "Provider not available",
        format!(
            "keel infra has no built-in provider for resource type {ty:?}. Built in: terraform_data, null, random, local, time, http, external, archive."
        ),
        None,
    )
}

fn check_rule(
    rule: &Rule,
    vars: &BTreeMap<String, Value>,
    run: &RunInfo,
    dir: &std::path::Path,
    summary: &str,
    what: &str,
) -> Result<(), Diagnostics> {
    let c = eval(&rule.condition, vars, run, dir)?;
    if !c.is_known() {
        return Ok(());
    }
    let ok = convert(&c, &Type::Bool)
        .ok()
        .and_then(|b| b.as_bool())
        .ok_or_else(|| {
            Diagnostics::error(
                "Invalid condition result",
                "Invalid condition result value: a bool is required.",
                Some(rule.condition.range().clone()),
            )
        })?;
    if ok {
        return Ok(());
    }
    let msg = match &rule.error_message {
        Some(e) => eval(e, vars, run, dir)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        None => String::new(),
    };
    let detail = if what.is_empty() || summary != "Invalid value for variable" {
        msg
    } else {
        format!(
            "{msg}\n\nThis was checked by the validation rule at {}.",
            rule.range
        )
    };
    Err(Diagnostics::error(
        summary,
        detail,
        Some(rule.condition.range().clone()),
    ))
}

/// Plans `root` against `prior`.
pub fn plan(
    root: &Module,
    graph: &Graph,
    providers: &Providers,
    run: &RunInfo,
    prior: &StateFile,
    opts: &Options,
) -> Result<Plan, Diagnostics> {
    let pure = RunInfo {
        funcs: run.funcs.pure_only(),
        provider_configs: if run.provider_configs.is_empty() {
            crate::provider_config::evaluate(root, run, &opts.inputs)?
        } else {
            run.provider_configs.clone()
        },
        ..run.clone()
    };
    let run = &pure;
    let (state, moves) = crate::apply::apply_moves(root, prior);
    let idx = index_state(&state);
    let mut plan = Plan {
        destroy: opts.destroy,
        refresh_only: opts.refresh_only,
        lineage: prior.lineage.clone(),
        serial: prior.serial,
        variables: opts.inputs.clone(),
        ..Plan::default()
    };
    if opts.destroy {
        let walk = Walk::new(root, graph, providers, run, opts, idx.clone());
        for r in &state.resources {
            if r.mode != "managed" {
                continue;
            }
            let mi =
                crate::addr::parse_module(r.module.as_deref().unwrap_or("")).unwrap_or_default();
            for inst in &r.instances {
                let before = walk.decode_prior(&r.ty, Mode::Managed, inst)?;
                plan.changes.push(Change {
                    module: mi.clone(),
                    mode: Mode::Managed,
                    ty: r.ty.clone(),
                    name: r.name.clone(),
                    key: Key::from_json(inst.index_key.as_ref()),
                    action: Action::Delete,
                    before: Some(before),
                    after: None,
                    replace_paths: Vec::new(),
                    reason: None,
                    provider: r.provider.clone(),
                    expansion: Expansion::Single,
                    deps: inst.dependencies.clone(),
                    moved_from: None,
                    importing: None,
                });
            }
        }
        for (k, o) in &state.outputs {
            let t = Type::from_json(&o.ty).unwrap_or(Type::Dynamic);
            let v = keel_hcl::render::from_json_typed(&o.value, &t)
                .unwrap_or_else(|_| Value::dyn_null())
                .mark(o.sensitive);
            plan.outputs.insert(
                k.clone(),
                crate::plan::OutputChange {
                    before: Some(v),
                    after: None,
                    sensitive: o.sensitive,
                },
            );
        }
        return Ok(plan);
    }
    let walk = Walk::new(root, graph, providers, run, opts, idx);
    let include = crate::apply::target_filter(graph, &opts.targets);
    let errs = crate::graph::run_dag(&graph.deps, &include, opts.parallelism, &|i| walk.node(i));
    if !errs.is_empty() {
        let mut d = Diagnostics::new();
        for e in errs {
            d.extend(e);
        }
        return Err(d);
    }
    // The root module's variables as planned (defaults included), for `show -json`.
    if let Some(mv) = walk.lock().mods.get(&Vec::new()) {
        for k in root.variables.keys() {
            if let Some(v) = mv.vars.get(k) {
                plan.variables.insert(k.clone(), v.clone());
            }
        }
    }
    for (mi, mv) in &walk.lock().mods {
        if mi.is_empty() {
            continue;
        }
        for (k, v) in &mv.outputs {
            if !v.is_null() {
                plan.module_outputs.push((mi.clone(), k.clone()));
            }
        }
    }
    let mut changes = walk
        .changes
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // State resources no configuration claimed.
    let claimed = walk
        .claimed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if opts.targets.is_empty() {
        for r in &state.resources {
            if r.mode != "managed" {
                continue;
            }
            let key = format!("{}.{}", r.ty, r.name);
            let prefix = r.module.clone().unwrap_or_default();
            let mi = crate::addr::parse_module(&prefix).unwrap_or_default();
            let removed = root
                .removed
                .iter()
                .find(|x| x.from.to_string() == resource_addr(&mi, &key));
            for inst in &r.instances {
                let k = Key::from_json(inst.index_key.as_ref());
                if claimed.contains(&(prefix.clone(), key.clone(), k.clone())) {
                    continue;
                }
                let w = Walk::new(root, graph, providers, run, opts, HashMap::new());
                let before = w.decode_prior(&r.ty, Mode::Managed, inst)?;
                let forget = removed.is_some_and(|x| !x.destroy);
                let reason = if !prefix.is_empty()
                    && graph
                        .index
                        .keys()
                        .any(|(p, n)| *p == config_path(&mi) && *n == NodeKind::Res(key.clone()))
                {
                    format!("because {} is not in configuration", module_prefix(&mi))
                } else {
                    format!(
                        "because {} is not in configuration",
                        resource_addr(&mi, &key)
                    )
                };
                changes.push(Change {
                    module: mi.clone(),
                    mode: Mode::Managed,
                    ty: r.ty.clone(),
                    name: r.name.clone(),
                    key: k,
                    action: if forget {
                        Action::Forget
                    } else {
                        Action::Delete
                    },
                    before: Some(before),
                    after: None,
                    replace_paths: Vec::new(),
                    reason: if removed.is_some() {
                        None
                    } else {
                        Some(reason)
                    },
                    provider: r.provider.clone(),
                    expansion: Expansion::Single,
                    deps: inst.dependencies.clone(),
                    moved_from: None,
                    importing: None,
                });
            }
        }
    }
    for (from, to) in &moves {
        if let Some(c) = changes.iter_mut().find(|c| c.addr() == *to) {
            c.moved_from = Some(from.clone());
        }
    }
    changes.sort_by(|a, b| {
        (module_prefix(&a.module), a.res_key(), &a.key).cmp(&(
            module_prefix(&b.module),
            b.res_key(),
            &b.key,
        ))
    });
    plan.changes = changes;
    plan.warnings = walk
        .warnings
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let outs = walk
        .outputs
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut names: BTreeSet<String> = outs.keys().cloned().collect();
    names.extend(state.outputs.keys().cloned());
    for n in names {
        let before = state.outputs.get(&n).map(|o| {
            let t = Type::from_json(&o.ty).unwrap_or(Type::Dynamic);
            keel_hcl::render::from_json_typed(&o.value, &t)
                .unwrap_or_else(|_| Value::dyn_null())
                .mark(o.sensitive)
        });
        let sensitive = root.outputs.get(&n).is_some_and(|o| o.sensitive)
            || state.outputs.get(&n).is_some_and(|o| o.sensitive);
        plan.outputs.insert(
            n.clone(),
            OutputChange {
                before,
                after: outs.get(&n).cloned(),
                sensitive,
            },
        );
    }
    Ok(plan)
}

/// The root module's values after planning (what `console` evaluates against).
pub fn root_scope(
    root: &Module,
    graph: &Graph,
    providers: &Providers,
    run: &RunInfo,
    prior: &StateFile,
    opts: &Options,
) -> Result<BTreeMap<String, Value>, Diagnostics> {
    let (state, _) = crate::apply::apply_moves(root, prior);
    let walk = Walk::new(root, graph, providers, run, opts, index_state(&state));
    let errs = crate::graph::run_dag(
        &graph.deps,
        &vec![true; graph.nodes.len()],
        opts.parallelism,
        &|i| walk.node(i),
    );
    if !errs.is_empty() {
        let mut d = Diagnostics::new();
        for e in errs {
            d.extend(e);
        }
        return Err(d);
    }
    let st = walk
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mv = st.mods.get(&Vec::new()).cloned().unwrap_or_default();
    let mut vars: BTreeMap<String, Value> = BTreeMap::new();
    vars.insert(
        "var".into(),
        Value::object(
            mv.vars
                .iter()
                .filter(|(k, _)| !k.starts_with('\u{0}'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    );
    vars.insert("local".into(), Value::object(mv.locals.clone()));
    let mut modules = BTreeMap::new();
    for c in mv.calls.keys() {
        modules.insert(c.clone(), st.call_value_pub(&mv, c));
    }
    vars.insert("module".into(), Value::object(modules));
    let mut data: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (k, r) in &mv.resources {
        let parts: Vec<&str> = k.split('.').collect();
        match parts.as_slice() {
            ["data", t, n] => {
                data.entry((*t).to_string())
                    .or_default()
                    .insert((*n).to_string(), r.value());
            }
            [t, n] => {
                let e = vars
                    .entry((*t).to_string())
                    .or_insert_with(Value::empty_object);
                if let keel_hcl::Kind::Object(m) = &mut e.kind {
                    m.insert((*n).to_string(), r.value());
                }
            }
            _ => {}
        }
    }
    vars.insert(
        "data".into(),
        Value::object(
            data.into_iter()
                .map(|(k, m)| (k, Value::object(m)))
                .collect(),
        ),
    );
    Ok(vars)
}
