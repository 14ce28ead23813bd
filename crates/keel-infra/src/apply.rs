//! Applying a plan: deletions first (dependents before what they depend on),
//! then the configuration walk again with every change carried out as its
//! final plan is known; each finished instance is recorded in state at once.
//! Also `moved` blocks and `-target` selection.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use keel_hcl::Value;
use keel_hcl::diag::Diagnostics;

use crate::addr::{Key, module_prefix, resource_addr};
use crate::config::{Mode, Module};
use crate::graph::{Graph, NodeKind, run_dag};
use crate::plan::{Action, Change, Options, Plan, Walk, index_state, no_provider};
use crate::providers::{OpCtx, Providers, ResourceType, Schema};
use crate::scope::{Expansion, RunInfo};
use crate::state::{
    InstanceState, JournalEntry, OutputState, ResourceState, StateFile, encode_attr,
    sensitive_paths,
};

/// Progress of an apply, for the CLI to print as terraform does.
#[derive(Clone, Debug)]
pub enum Event {
    Start {
        addr: String,
        action: Action,
        id: Option<String>,
    },
    Done {
        addr: String,
        action: Action,
        id: Option<String>,
        secs: u64,
    },
    Failed {
        addr: String,
        action: Action,
        error: String,
    },
}

/// Where apply records state changes as they happen.
pub trait Recorder: Send + Sync {
    fn record(&self, entry: JournalEntry);
}

/// The result of an apply.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub added: usize,
    pub changed: usize,
    pub destroyed: usize,
    pub imported: usize,
    pub outputs: BTreeMap<String, Value>,
}

/// Renames state addresses as `moved` blocks say (when the new address is free).
pub fn apply_moves(root: &Module, prior: &StateFile) -> (StateFile, Vec<(String, String)>) {
    let mut s = prior.clone();
    let mut moves = Vec::new();
    collect_moves(root, &[], &mut s, &mut moves);
    (s, moves)
}

fn collect_moves(
    m: &Module,
    path: &[(String, Key)],
    s: &mut StateFile,
    out: &mut Vec<(String, String)>,
) {
    let prefix = module_prefix(&path.to_vec());
    for mv in &m.moved {
        let (from, to) = (mv.from.to_string(), mv.to.to_string());
        let parse = |x: &str| {
            crate::addr::parse_inst_addr(&if prefix.is_empty() {
                x.to_string()
            } else {
                format!("{prefix}.{x}")
            })
        };
        let (Some(f), Some(t)) = (parse(&from), parse(&to)) else {
            // Module moves: `module.a` to `module.b`.
            if from.starts_with("module.") && to.starts_with("module.") && !from.contains('[') {
                let (fp, tp) = (
                    if prefix.is_empty() {
                        from.clone()
                    } else {
                        format!("{prefix}.{from}")
                    },
                    if prefix.is_empty() {
                        to.clone()
                    } else {
                        format!("{prefix}.{to}")
                    },
                );
                for r in &mut s.resources {
                    if let Some(mm) = r.module.clone()
                        && (mm == fp
                            || mm.starts_with(&format!("{fp}."))
                            || mm.starts_with(&format!("{fp}[")))
                    {
                        r.module = Some(format!("{tp}{}", &mm[fp.len()..]));
                        out.push((
                            format!("{mm}.{}.{}", r.ty, r.name),
                            format!(
                                "{}.{}.{}",
                                r.module.clone().unwrap_or_default(),
                                r.ty,
                                r.name
                            ),
                        ));
                    }
                }
            }
            continue;
        };
        let fmod = module_prefix(&f.module);
        let tmod = module_prefix(&t.module);
        let find = |s: &StateFile, module: &str, key: &str| {
            s.resources.iter().position(|r| {
                r.module.clone().unwrap_or_default() == module
                    && format!(
                        "{}{}.{}",
                        if r.mode == "data" { "data." } else { "" },
                        r.ty,
                        r.name
                    ) == key
            })
        };
        let Some(fi) = find(s, &fmod, &f.res_key) else {
            continue;
        };
        match (&f.key, &t.key) {
            (None, None) => {
                if find(s, &tmod, &t.res_key).is_some() {
                    continue;
                }
                let r = &mut s.resources[fi];
                let parts: Vec<&str> = t.res_key.rsplitn(2, '.').collect();
                if parts.len() == 2 {
                    r.name = parts[0].to_string();
                    r.ty = parts[1].trim_start_matches("data.").to_string();
                }
                r.module = if tmod.is_empty() {
                    None
                } else {
                    Some(tmod.clone())
                };
                for i in &r.instances {
                    let k = Key::from_json(i.index_key.as_ref());
                    out.push((format!("{f}{k}"), format!("{t}{k}")));
                }
            }
            (fk, tk) => {
                let fk = fk.clone().unwrap_or(Key::None);
                let tk = tk.clone().unwrap_or(Key::None);
                let Some(ii) = s.resources[fi]
                    .instances
                    .iter()
                    .position(|i| Key::from_json(i.index_key.as_ref()) == fk)
                else {
                    continue;
                };
                let mut inst = s.resources[fi].instances.remove(ii);
                inst.index_key = tk.to_json();
                let template = s.resources[fi].clone();
                if s.resources[fi].instances.is_empty() {
                    s.resources.remove(fi);
                }
                let ti = if let Some(i) = find(s, &tmod, &t.res_key) {
                    i
                } else {
                    let parts: Vec<&str> = t.res_key.rsplitn(2, '.').collect();
                    s.resources.push(ResourceState {
                        module: if tmod.is_empty() {
                            None
                        } else {
                            Some(tmod.clone())
                        },
                        name: parts[0].to_string(),
                        ty: parts
                            .get(1)
                            .unwrap_or(&"")
                            .trim_start_matches("data.")
                            .to_string(),
                        instances: Vec::new(),
                        each: None,
                        ..template
                    });
                    s.resources.len() - 1
                };
                if s.resources[ti]
                    .instances
                    .iter()
                    .any(|i| Key::from_json(i.index_key.as_ref()) == tk)
                {
                    continue;
                }
                s.resources[ti].instances.push(inst);
                out.push((
                    crate::addr::instance_addr(&f.module, &f.res_key, &fk),
                    crate::addr::instance_addr(&t.module, &t.res_key, &tk),
                ));
            }
        }
    }
    implied_moves(m, &prefix, s, out);
    for (n, c) in &m.calls {
        let mut p = path.to_vec();
        p.push((n.clone(), Key::None));
        collect_moves(&c.module, &p, s, out);
    }
}

/// Terraform's implied moves: a resource that gains `count` keeps its
/// single instance as `[0]`; one that loses `count` keeps `[0]` as itself.
fn implied_moves(m: &Module, prefix: &str, s: &mut StateFile, out: &mut Vec<(String, String)>) {
    for r in m.resources.values() {
        if r.mode != Mode::Managed || r.for_each.is_some() {
            continue;
        }
        let (from, to) = if r.count.is_some() {
            (Key::None, Key::Int(0))
        } else {
            (Key::Int(0), Key::None)
        };
        for st in &mut s.resources {
            if st.mode != "managed"
                || st.ty != r.ty
                || st.name != r.name
                || st.module.clone().unwrap_or_default() != prefix
            {
                continue;
            }
            let keys: Vec<Key> = st
                .instances
                .iter()
                .filter(|i| i.deposed.is_none())
                .map(|i| Key::from_json(i.index_key.as_ref()))
                .collect();
            if keys.contains(&to) || !keys.contains(&from) {
                continue;
            }
            for i in &mut st.instances {
                if Key::from_json(i.index_key.as_ref()) == from {
                    i.index_key = to.to_json();
                }
            }
            let addr = |k: &Key| {
                let p = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}.")
                };
                format!("{p}{}{k}", r.key())
            };
            out.push((addr(&from), addr(&to)));
        }
    }
}

/// Which graph nodes a `-target` run includes: the targets and what they depend on.
pub fn target_filter(g: &Graph, targets: &[crate::addr::InstAddr]) -> Vec<bool> {
    if targets.is_empty() {
        return vec![true; g.nodes.len()];
    }
    let mut inc = vec![false; g.nodes.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if let NodeKind::Res(k) = &n.kind
            && targets
                .iter()
                .any(|t| t.res_key == *k && crate::addr::config_path(&t.module) == n.path)
        {
            stack.push(i);
        }
        if let NodeKind::Call(c) = &n.kind {
            let mut p = n.path.clone();
            p.push(c.clone());
            let _ = p;
        }
    }
    while let Some(i) = stack.pop() {
        if inc[i] {
            continue;
        }
        inc[i] = true;
        stack.extend(g.deps[i].iter().copied());
    }
    // Outputs are evaluated when everything they need is included.
    for (i, n) in g.nodes.iter().enumerate() {
        if matches!(n.kind, NodeKind::Output(_)) && g.deps[i].iter().all(|&d| inc[d]) {
            inc[i] = true;
        }
    }
    inc
}

fn id_of(v: Option<&Value>) -> Option<String> {
    v.and_then(|v| crate::providers::get_str(v, "id"))
        .map(str::to_string)
}

fn entry(
    c: &Change,
    value: Option<&Value>,
    schema: &Schema,
    removed: bool,
    deps: &[String],
) -> JournalEntry {
    let ty = schema.implied_type();
    let inst = InstanceState {
        index_key: c.key.to_json(),
        status: None,
        deposed: None,
        schema_version: 0,
        attributes: value.map_or(serde_json::Value::Null, |v| encode_attr(v, &ty)),
        sensitive_attributes: value.map_or(serde_json::Value::Array(vec![]), sensitive_paths),
        attributes_flat: None,
        identity_schema_version: None,
        identity: None,
        private: None,
        dependencies: deps.to_vec(),
        create_before_destroy: false,
    };
    let module = module_prefix(&c.module);
    JournalEntry {
        resource: ResourceState {
            module: if module.is_empty() {
                None
            } else {
                Some(module)
            },
            mode: if c.mode == Mode::Data {
                "data".into()
            } else {
                "managed".into()
            },
            ty: c.ty.clone(),
            name: c.name.clone(),
            each: match c.expansion {
                Expansion::Count => Some("list".into()),
                Expansion::Each => Some("map".into()),
                Expansion::Single => None,
            },
            provider: c.provider.clone(),
            instances: vec![inst],
        },
        removed,
    }
}

/// Applies `plan`. State changes go to `rec` as they happen; the final outputs are returned.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    root: &Module,
    graph: &Graph,
    providers: &Providers,
    run: &RunInfo,
    prior: &StateFile,
    plan: &Plan,
    opts: &Options,
    rec: &dyn Recorder,
    events: &(dyn Fn(Event) + Sync),
) -> Result<Summary, Diagnostics> {
    let summary = Mutex::new(Summary::default());
    let configured;
    let run = if run.provider_configs.is_empty() && !root.providers.is_empty() {
        configured = RunInfo {
            provider_configs: crate::provider_config::evaluate(root, run, &plan.variables)?,
            ..run.clone()
        };
        &configured
    } else {
        run
    };
    let op = |c: &Change| OpCtx::for_change(run, &c.ty, &c.provider);
    // Phase 1: deletions, dependents first.
    let dels: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| {
            c.mode == Mode::Managed
                && matches!(
                    c.action,
                    Action::Delete | Action::Replace(false) | Action::Forget
                )
        })
        .collect();
    let addr_of: Vec<String> = dels
        .iter()
        .map(|c| resource_addr(&c.module, &c.res_key()))
        .collect();
    let deps: Vec<Vec<usize>> = (0..dels.len())
        .map(|i| {
            (0..dels.len())
                .filter(|&j| j != i && dels[j].deps.contains(&addr_of[i]))
                .collect()
        })
        .collect();
    let del_errs = run_dag(&deps, &vec![true; dels.len()], opts.parallelism, &|i| {
        let c = dels[i];
        let rt = providers
            .resource(&c.ty)
            .ok_or_else(|| no_provider(&c.ty))?;
        if c.action != Action::Forget {
            let start = Instant::now();
            events(Event::Start {
                addr: c.addr(),
                action: Action::Delete,
                id: id_of(c.before.as_ref()),
            });
            if let Err(e) = rt.delete(c.before.as_ref().unwrap_or(&Value::dyn_null()), &op(c)) {
                events(Event::Failed {
                    addr: c.addr(),
                    action: Action::Delete,
                    error: e.clone(),
                });
                return Err(Diagnostics::error(
                    "Error deleting resource",
                    format!("{}: {e}", c.addr()),
                    None,
                ));
            }
            events(Event::Done {
                addr: c.addr(),
                action: Action::Delete,
                id: None,
                secs: start.elapsed().as_secs(),
            });
        }
        rec.record(entry(c, None, rt.schema(), true, &[]));
        if c.action == Action::Delete {
            summary
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .destroyed += 1;
        }
        Ok(())
    });
    if !del_errs.is_empty() {
        let mut d = Diagnostics::new();
        for e in del_errs {
            d.extend(e);
        }
        return Err(d);
    }
    if plan.destroy {
        let mut s = summary
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.outputs.clear();
        return Ok(s);
    }
    // Phase 2: the walk, applying as it plans.
    let (state, _) = apply_moves(root, prior);
    let mut idx = index_state(&state);
    // Instances deleted in phase 1 are gone.
    for c in &dels {
        if let Some((_, insts)) = idx.get_mut(&(module_prefix(&c.module), c.res_key())) {
            insts.remove(&c.key);
        }
    }
    let planned: HashMap<String, Action> =
        plan.changes.iter().map(|c| (c.addr(), c.action)).collect();
    let mut walk = Walk::new(root, graph, providers, run, opts, idx);
    let summ = &summary;
    walk.applier = Some(Arc::new(
        move |c: &Change, rt: &dyn ResourceType, schema: &Schema| -> Result<Value, Diagnostics> {
            let addr = c.addr();
            let was_replace = matches!(planned.get(&addr), Some(Action::Replace(false)));
            // A replacement's old object is gone already (phase 1): create.
            let action =
                if was_replace && matches!(c.action, Action::Replace(false) | Action::Create) {
                    Action::Create
                } else {
                    c.action
                };
            let after = c.after.clone().unwrap_or_else(Value::dyn_null);
            let deps = c.deps.clone();
            match action {
                Action::NoOp => {
                    let v = c.before.clone().unwrap_or(after);
                    if c.deps.is_empty() && c.before.is_some() {
                        return Ok(v);
                    }
                    rec.record(entry(c, Some(&v), schema, false, &deps));
                    Ok(v)
                }
                Action::Create | Action::Update => {
                    let start = Instant::now();
                    events(Event::Start {
                        addr: addr.clone(),
                        action,
                        id: id_of(c.before.as_ref()),
                    });
                    let prior = if action == Action::Update {
                        c.before.as_ref()
                    } else {
                        None
                    };
                    let v = rt.apply(prior, &after, &op(c)).map_err(|e| {
                        events(Event::Failed {
                            addr: addr.clone(),
                            action,
                            error: e.clone(),
                        });
                        Diagnostics::error(
                            if action == Action::Create {
                                "Error creating resource"
                            } else {
                                "Error updating resource"
                            },
                            format!("{addr}: {e}"),
                            None,
                        )
                    })?;
                    let v = crate::plan::mark_schema(v, schema);
                    rec.record(entry(c, Some(&v), schema, false, &deps));
                    events(Event::Done {
                        addr: addr.clone(),
                        action,
                        id: id_of(Some(&v)),
                        secs: start.elapsed().as_secs(),
                    });
                    let mut s = summ
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if action == Action::Create {
                        s.added += 1;
                        if was_replace {
                            s.destroyed += 0;
                        }
                    } else {
                        s.changed += 1;
                    }
                    Ok(v)
                }
                Action::Replace(cbd) => {
                    let start = Instant::now();
                    if !cbd {
                        events(Event::Start {
                            addr: addr.clone(),
                            action: Action::Delete,
                            id: id_of(c.before.as_ref()),
                        });
                        rt.delete(c.before.as_ref().unwrap_or(&Value::dyn_null()), &op(c))
                            .map_err(|e| {
                                Diagnostics::error(
                                    "Error deleting resource",
                                    format!("{addr}: {e}"),
                                    None,
                                )
                            })?;
                        events(Event::Done {
                            addr: addr.clone(),
                            action: Action::Delete,
                            id: None,
                            secs: start.elapsed().as_secs(),
                        });
                    }
                    events(Event::Start {
                        addr: addr.clone(),
                        action: Action::Create,
                        id: None,
                    });
                    let v = rt.apply(None, &after, &op(c)).map_err(|e| {
                        Diagnostics::error("Error creating resource", format!("{addr}: {e}"), None)
                    })?;
                    let v = crate::plan::mark_schema(v, schema);
                    rec.record(entry(c, Some(&v), schema, false, &deps));
                    events(Event::Done {
                        addr: addr.clone(),
                        action: Action::Create,
                        id: id_of(Some(&v)),
                        secs: start.elapsed().as_secs(),
                    });
                    if cbd {
                        rt.delete(c.before.as_ref().unwrap_or(&Value::dyn_null()), &op(c))
                            .map_err(|e| {
                                Diagnostics::error(
                                    "Error deleting resource",
                                    format!("{addr}: {e}"),
                                    None,
                                )
                            })?;
                    }
                    let mut s = summ
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    s.added += 1;
                    s.destroyed += 1;
                    Ok(v)
                }
                Action::Read | Action::Delete | Action::Forget => Ok(after),
            }
        },
    ));
    let include = target_filter(graph, &opts.targets);
    let errs = run_dag(&graph.deps, &include, opts.parallelism, &|i| walk.node(i));
    // Replacements planned as delete-first whose create did not happen still count as destroyed.
    {
        let mut s = summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let replaced = plan
            .changes
            .iter()
            .filter(|c| c.mode == Mode::Managed && matches!(c.action, Action::Replace(false)))
            .count();
        s.destroyed += replaced;
    }
    if !errs.is_empty() {
        let mut d = Diagnostics::new();
        for e in errs {
            d.extend(e);
        }
        return Err(d);
    }
    let outs = walk
        .outputs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    drop(walk);
    let mut s = summary
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    s.outputs = outs;
    Ok(s)
}

/// Records root outputs in state.
pub fn set_outputs(
    state: &mut StateFile,
    outputs: &BTreeMap<String, Value>,
    sensitive: &dyn Fn(&str) -> bool,
) {
    state.outputs.clear();
    for (k, v) in outputs {
        if !v.is_wholly_known() {
            continue;
        }
        state.outputs.insert(
            k.clone(),
            OutputState {
                value: keel_hcl::render::to_json(v),
                ty: v.ty().to_json(),
                sensitive: sensitive(k) || v.has_sensitive(),
            },
        );
    }
}

/// An in-memory state with a journal: what `apply` records into.
pub struct StateRecorder {
    pub state: Mutex<StateFile>,
    journal: Mutex<Option<crate::state::Journal>>,
}

impl StateRecorder {
    pub fn new(state: StateFile, journal: Option<crate::state::Journal>) -> Self {
        StateRecorder {
            state: Mutex::new(state),
            journal: Mutex::new(journal),
        }
    }

    pub fn into_parts(self) -> (StateFile, Option<crate::state::Journal>) {
        (
            self.state
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            self.journal
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Recorder for StateRecorder {
    fn record(&self, e: JournalEntry) {
        if let Some(j) = self
            .journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            let _ = j.record(&e);
        }
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::state::apply_entry(&mut s, e);
    }
}

/// Values of resources in state, for the console and `output` when no plan ran.
pub fn state_value(
    providers: &Providers,
    inst: &InstanceState,
    ty: &str,
    mode: Mode,
) -> Option<Value> {
    let schema = match mode {
        Mode::Managed => providers.resource(ty)?.schema().implied_type(),
        Mode::Data => providers.data(ty)?.schema().implied_type(),
    };
    crate::state::decode_attr(&inst.attributes, &schema).ok()
}
