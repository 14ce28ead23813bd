//! The dependency graph of a configuration (one node per variable, local,
//! output, resource and module call of every module path) and a parallel
//! executor that walks it, at most `parallelism` nodes at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Condvar, Mutex};

use keel_hcl::diag::{Diagnostic, Diagnostics, Range};
use keel_hcl::syntax::{RefStep, Reference};

use crate::config::Module;
use crate::scope::body_refs;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    Call(String),
    Var(String),
    Local(String),
    Res(String),
    Output(String),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub path: Vec<String>,
    pub kind: NodeKind,
}

/// `module.a.module.b.` for a config path (empty for the root).
fn module_dots(path: &[String]) -> String {
    path.iter().fold(String::new(), |mut s, m| {
        s.push_str("module.");
        s.push_str(m);
        s.push('.');
        s
    })
}

impl Node {
    pub fn label(&self) -> String {
        let p = module_dots(&self.path);
        match &self.kind {
            NodeKind::Call(n) => format!("{p}module.{n}"),
            NodeKind::Var(n) => format!("{p}var.{n}"),
            NodeKind::Local(n) => format!("{p}local.{n}"),
            NodeKind::Res(n) => format!("{p}{n}"),
            NodeKind::Output(n) => format!("{p}output.{n}"),
        }
    }
}

/// Nodes and their dependencies (indices).
#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub deps: Vec<Vec<usize>>,
    pub index: HashMap<(Vec<String>, NodeKind), usize>,
    /// Per resource node: the resources it depends on, transitively (config addresses).
    pub res_deps: HashMap<usize, BTreeSet<String>>,
}

pub fn module_at<'a>(root: &'a Module, path: &[String]) -> &'a Module {
    let mut m = root;
    for p in path {
        m = &m.calls[p].module;
    }
    m
}

fn err(summary: &str, detail: String, r: &Range) -> Diagnostic {
    Diagnostic::error(summary, detail, Some(r.clone()))
}

fn where_(path: &[String]) -> String {
    if path.is_empty() {
        "the root module".into()
    } else {
        format!("module.{}", path.join(".module."))
    }
}

impl Graph {
    pub fn build(root: &Module) -> Result<Graph, Diagnostics> {
        let mut g = Graph::default();
        g.add_nodes(root, &[]);
        let mut diags = Diagnostics::new();
        for i in 0..g.nodes.len() {
            let n = g.nodes[i].clone();
            let m = module_at(root, &n.path);
            let mut refs: Vec<Reference> = Vec::new();
            let mut deps: BTreeSet<usize> = BTreeSet::new();
            let mut in_parent: Vec<Reference> = Vec::new();
            let (allow_count, allow_each) = match &n.kind {
                NodeKind::Var(x) => {
                    if let Some((last, parent)) = n.path.split_last() {
                        let call = &module_at(root, parent).calls[last];
                        if let Some(a) = call.inputs.get(x) {
                            in_parent.extend(a.expr.references());
                        }
                    }
                    let v = &m.variables[x];
                    for r in &v.validations {
                        refs.extend(r.condition.references().into_iter().filter(|r| {
                            !(r.root == "var"
                                && matches!(r.steps.first(), Some(RefStep::Attr(a)) if a == x))
                        }));
                    }
                    if let Some(d) = &v.default {
                        refs.extend(d.references());
                    }
                    (false, false)
                }
                NodeKind::Local(x) => {
                    refs.extend(m.locals[x].expr.references());
                    (false, false)
                }
                NodeKind::Output(x) => {
                    let o = &m.outputs[x];
                    refs.extend(o.expr.references());
                    refs.extend(o.depends_on.iter().cloned());
                    for p in &o.preconditions {
                        refs.extend(p.condition.references());
                    }
                    (false, false)
                }
                NodeKind::Res(k) => {
                    let r = &m.resources[k];
                    refs.extend(body_refs(&r.body));
                    for e in r.count.iter().chain(r.for_each.iter()) {
                        refs.extend(e.references());
                    }
                    refs.extend(r.depends_on.iter().cloned());
                    for e in &r.lifecycle.replace_triggered_by {
                        refs.extend(e.references());
                    }
                    for c in r
                        .lifecycle
                        .preconditions
                        .iter()
                        .chain(&r.lifecycle.postconditions)
                    {
                        refs.extend(
                            c.condition
                                .references()
                                .into_iter()
                                .filter(|r| r.root != "self"),
                        );
                    }
                    (r.count.is_some(), r.for_each.is_some())
                }
                NodeKind::Call(c) => {
                    let call = &m.calls[c];
                    for e in call.count.iter().chain(call.for_each.iter()) {
                        refs.extend(e.references());
                    }
                    refs.extend(call.depends_on.iter().cloned());
                    (false, false)
                }
            };
            for r in &refs {
                if r.root == "count" && !allow_count {
                    diags.push(err("Reference to \"count\" in non-counted context", "The \"count\" object can only be used in \"module\", \"resource\", and \"data\" blocks, and only when the \"count\" argument is set.".into(), &r.range));
                    continue;
                }
                if r.root == "each" && !allow_each {
                    diags.push(err("Reference to \"each\" in context without for_each", "The \"each\" object can be used only in \"module\" or \"resource\" blocks, and only when the \"for_each\" argument is set.".into(), &r.range));
                    continue;
                }
                match g.resolve(root, &n.path, r) {
                    Ok(ds) => deps.extend(ds),
                    Err(d) => diags.push(d),
                }
            }
            if let Some((last, parent)) = n.path.split_last() {
                for r in &in_parent {
                    if r.root == "count" || r.root == "each" {
                        continue;
                    }
                    match g.resolve(root, parent, r) {
                        Ok(ds) => deps.extend(ds),
                        Err(d) => diags.push(d),
                    }
                }
                deps.insert(g.index[&(parent.to_vec(), NodeKind::Call(last.clone()))]);
            }
            deps.remove(&i);
            g.deps.push(deps.into_iter().collect());
        }
        if diags.has_errors() {
            return Err(diags);
        }
        g.check_cycles()?;
        g.compute_res_deps();
        Ok(g)
    }

    fn add_nodes(&mut self, m: &Module, path: &[String]) {
        let add = |g: &mut Graph, kind: NodeKind| {
            g.index.insert((path.to_vec(), kind.clone()), g.nodes.len());
            g.nodes.push(Node {
                path: path.to_vec(),
                kind,
            });
        };
        for c in m.calls.keys() {
            add(self, NodeKind::Call(c.clone()));
        }
        for v in m.variables.keys() {
            add(self, NodeKind::Var(v.clone()));
        }
        for l in m.locals.keys() {
            add(self, NodeKind::Local(l.clone()));
        }
        for r in m.resources.keys() {
            add(self, NodeKind::Res(r.clone()));
        }
        for o in m.outputs.keys() {
            add(self, NodeKind::Output(o.clone()));
        }
        for (c, call) in &m.calls {
            let mut p = path.to_vec();
            p.push(c.clone());
            self.add_nodes(&call.module, &p);
        }
    }

    fn get(&self, path: &[String], kind: NodeKind) -> Option<usize> {
        self.index.get(&(path.to_vec(), kind)).copied()
    }

    /// The nodes a reference in module `path` depends on.
    fn resolve(
        &self,
        root: &Module,
        path: &[String],
        r: &Reference,
    ) -> Result<Vec<usize>, Diagnostic> {
        let attr = |i: usize| match r.steps.get(i) {
            Some(RefStep::Attr(a)) => Some(a.as_str()),
            _ => None,
        };
        let m = module_at(root, path);
        match r.root.as_str() {
            "count" | "each" | "path" | "terraform" | "self" => Ok(vec![]),
            "var" => {
                let n = attr(0).ok_or_else(|| err("Invalid reference", "The \"var\" object cannot be accessed directly. Instead, access one of its attributes.".into(), &r.range))?;
                self.get(path, NodeKind::Var(n.into())).map(|i| vec![i]).ok_or_else(|| {
                    err("Reference to undeclared input variable", format!("An input variable with the name {n:?} has not been declared. This variable can be declared with a variable {n:?} {{}} block."), &r.range)
                })
            }
            "local" => {
                let n = attr(0).ok_or_else(|| err("Invalid reference", "The \"local\" object cannot be accessed directly. Instead, access one of its attributes.".into(), &r.range))?;
                self.get(path, NodeKind::Local(n.into()))
                    .map(|i| vec![i])
                    .ok_or_else(|| {
                        err(
                            "Reference to undeclared local value",
                            format!("A local value with the name {n:?} has not been declared."),
                            &r.range,
                        )
                    })
            }
            "module" => {
                let n = attr(0).ok_or_else(|| err("Invalid reference", "The \"module\" object cannot be accessed directly. Instead, access one of its attributes.".into(), &r.range))?;
                let Some(call) = m.calls.get(n) else {
                    return Err(err(
                        "Reference to undeclared module",
                        format!(
                            "No module call named {n:?} is declared in {}.",
                            where_(path)
                        ),
                        &r.range,
                    ));
                };
                let mut child = path.to_vec();
                child.push(n.to_string());
                let mut out = vec![self.get(path, NodeKind::Call(n.into())).unwrap_or_default()];
                // module.x.out (or module.x[0].out): that output; module.x: all of them.
                let out_name = attr(1).or_else(|| {
                    if matches!(r.steps.get(1), Some(RefStep::Index(_) | RefStep::Key(_))) {
                        attr(2)
                    } else {
                        None
                    }
                });
                match out_name {
                    Some(o) => match self.get(&child, NodeKind::Output(o.into())) {
                        Some(i) => out.push(i),
                        None => {
                            return Err(err(
                                "Unsupported attribute",
                                format!("This object does not have an attribute named {o:?}."),
                                &r.range,
                            ));
                        }
                    },
                    None => out.extend(
                        call.module
                            .outputs
                            .keys()
                            .filter_map(|o| self.get(&child, NodeKind::Output(o.clone()))),
                    ),
                }
                Ok(out)
            }
            "data" => {
                let (Some(t), Some(n)) = (attr(0), attr(1)) else {
                    return Err(err(
                        "Invalid data resource reference",
                        "A data resource reference must have the form data.TYPE.NAME.".into(),
                        &r.range,
                    ));
                };
                self.get(path, NodeKind::Res(format!("data.{t}.{n}")))
                    .map(|i| vec![i])
                    .ok_or_else(|| {
                        err(
                            "Reference to undeclared resource",
                            format!(
                                "A data resource {t:?} {n:?} has not been declared in {}.",
                                where_(path)
                            ),
                            &r.range,
                        )
                    })
            }
            ty => {
                let Some(n) = attr(0) else {
                    return Err(err("Invalid reference", "A reference to a resource type must be followed by at least one attribute access, specifying the resource name.".into(), &r.range));
                };
                self.get(path, NodeKind::Res(format!("{ty}.{n}")))
                    .map(|i| vec![i])
                    .ok_or_else(|| {
                        err(
                            "Reference to undeclared resource",
                            format!(
                                "A managed resource {ty:?} {n:?} has not been declared in {}.",
                                where_(path)
                            ),
                            &r.range,
                        )
                    })
            }
        }
    }

    fn check_cycles(&self) -> Result<(), Diagnostics> {
        let n = self.nodes.len();
        let mut indeg: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, ds) in self.deps.iter().enumerate() {
            for &d in ds {
                users[d].push(i);
            }
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
        let mut done = 0;
        while let Some(i) = ready.pop() {
            done += 1;
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.push(u);
                }
            }
        }
        if done == n {
            return Ok(());
        }
        let stuck: Vec<String> = (0..n)
            .filter(|&i| indeg[i] > 0)
            .map(|i| self.nodes[i].label())
            .collect();
        Err(Diagnostics::error(
            "Cycle",
            format!("Cycle: {}", stuck.join(", ")),
            None,
        ))
    }

    fn compute_res_deps(&mut self) {
        let n = self.nodes.len();
        for i in 0..n {
            if !matches!(self.nodes[i].kind, NodeKind::Res(_)) {
                continue;
            }
            let mut seen = vec![false; n];
            let mut stack: Vec<usize> = self.deps[i].clone();
            let mut out = BTreeSet::new();
            while let Some(d) = stack.pop() {
                if seen[d] {
                    continue;
                }
                seen[d] = true;
                if let NodeKind::Res(k) = &self.nodes[d].kind {
                    out.insert(format!("{}{k}", module_dots(&self.nodes[d].path)));
                }
                stack.extend(self.deps[d].iter().copied());
            }
            self.res_deps.insert(i, out);
        }
    }
}

/// Runs `f` on every included node after its dependencies, `parallel` at a
/// time. A failed node's dependents do not run; independent work goes on.
pub fn run_dag<E: Send>(
    deps: &[Vec<usize>],
    include: &[bool],
    parallel: usize,
    f: &(dyn Fn(usize) -> Result<(), E> + Sync),
) -> Vec<E> {
    struct St {
        indeg: Vec<usize>,
        ready: Vec<usize>,
        running: usize,
        left: usize,
        failed: Vec<bool>,
    }
    let n = deps.len();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            users[d].push(i);
            indeg[i] += 1;
        }
    }
    let ready: Vec<usize> = (0..n).rev().filter(|&i| indeg[i] == 0).collect();
    let st = Mutex::new(St {
        indeg,
        ready,
        running: 0,
        left: n,
        failed: vec![false; n],
    });
    let cv = Condvar::new();
    let errors = Mutex::new(Vec::new());
    let panicked: Mutex<Option<Box<dyn std::any::Any + Send>>> = Mutex::new(None);
    let workers = parallel.max(1).min(n.max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let job = {
                        let mut g = st.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        loop {
                            if let Some(j) = g.ready.pop() {
                                g.running += 1;
                                break Some(j);
                            }
                            if g.left == 0 || (g.running == 0 && g.ready.is_empty()) {
                                break None;
                            }
                            g = cv
                                .wait(g)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                    };
                    let Some(j) = job else {
                        cv.notify_all();
                        return;
                    };
                    let skip = {
                        st.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .failed[j]
                    };
                    let ok = if include[j] && !skip {
                        // A panicking node must not leave the others waiting
                        // for it: it fails, and the panic goes on after the walk.
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(j))) {
                            Ok(Ok(())) => true,
                            Ok(Err(e)) => {
                                errors
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .push(e);
                                false
                            }
                            Err(p) => {
                                panicked
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .get_or_insert(p);
                                false
                            }
                        }
                    } else {
                        !skip
                    };
                    let mut g = st.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    g.running -= 1;
                    g.left -= 1;
                    for &u in &users[j] {
                        if !ok {
                            g.failed[u] = true;
                        }
                        g.indeg[u] -= 1;
                        if g.indeg[u] == 0 {
                            g.ready.push(u);
                        }
                    }
                    drop(g);
                    cv.notify_all();
                }
            });
        }
    });
    if let Some(p) = panicked
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        std::panic::resume_unwind(p);
    }
    errors
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A panicking node used to leave the other workers waiting for it
    /// forever (its `running` count never went down): the walk hung instead
    /// of unwinding, so `keel infra apply | head -1` never released its lock.
    #[test]
    fn a_panicking_node_does_not_hang_the_walk() {
        let deps = vec![vec![], vec![0], vec![]];
        let ran = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(|| {
            run_dag::<()>(&deps, &[true; 3], 2, &|i| {
                ran.fetch_add(1, Ordering::SeqCst);
                assert!(i != 0, "node 0 panics");
                Ok(())
            })
        });
        assert!(r.is_err(), "the panic goes on after the walk");
        // Node 2 ran; node 1 (after the panicked node 0) did not.
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn dag_runs_in_order_and_stops_below_failures() {
        // 0 <- 1 <- 2, 0 <- 3; 1 fails so 2 never runs.
        let deps = vec![vec![], vec![0], vec![1], vec![0]];
        let order = Mutex::new(Vec::new());
        let count = AtomicUsize::new(0);
        let errs = run_dag(&deps, &[true; 4], 3, &|i| {
            count.fetch_add(1, Ordering::SeqCst);
            order.lock().unwrap().push(i);
            if i == 1 {
                Err(format!("node {i}"))
            } else {
                Ok(())
            }
        });
        assert_eq!(errs, vec!["node 1".to_string()]);
        let order = order.into_inner().unwrap();
        assert_eq!(order[0], 0);
        assert!(!order.contains(&2));
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }
}
