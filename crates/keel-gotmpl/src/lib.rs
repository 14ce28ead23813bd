//! Go's `text/template` engine with the sprig and Helm function maps, pure (no
//! I/O). [`Templates`] is a named set of parsed templates (Go's `*Template`
//! with its associated templates); [`Value`] is the dynamic value model
//! (`map[string]interface{}`, `[]interface{}`, int/int64/float64, …) with
//! [`Object`] for host objects such as Helm's `.Files`. Parse and execution
//! errors read exactly like Go's (`template: NAME:LINE:COL: executing …`).

// Lints allowed for this crate, each for a reason:
// - cast_precision_loss: Go's int/float conversions are lossy by definition; we mirror them.
// - float_cmp: `eq` on float64 is exact equality in Go.
// - many_single_char_names: ported Go code (fmt, strconv, semver) keeps Go's short names.
// - struct_excessive_bools: fmt flags are a set of bools, as in Go.
// - too_many_arguments: the executor's eval functions mirror Go's signatures.
// - match_same_arms: arms follow Go's case lists for readability against the source.
#![allow(
    clippy::cast_precision_loss,
    clippy::float_cmp,
    clippy::many_single_char_names,
    clippy::struct_excessive_bools,
    clippy::too_many_arguments,
    clippy::match_same_arms
)]

mod exec;
mod funcs;
pub mod gofmt;
pub mod goyaml;
mod helm;
pub mod parse;
mod sprig;
mod value;
pub mod yaml;

use std::collections::HashMap;
use std::rc::Rc;

pub use funcs::{FuncDef, Imp, Ty};
pub use goyaml::yaml_to_value;
pub use sprig::b64enc;
/// Masterminds `NewConstraint(c).Check(NewVersion(v))` (Helm checks dependency versions with it).
pub use sprig::semver_compare;
pub use value::{Elem, List, MapRef, Object, Value, go_bytes, go_string};

/// What a missing map key evaluates to (Go's `missingkey` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Go's default: an invalid value, printed as `<no value>`.
    #[default]
    Invalid,
    /// `missingkey=zero`: the zero value of `interface{}` (nil); Helm's mode.
    Zero,
    /// `missingkey=error`: execution stops with an error.
    Error,
}

/// Errors of parsing or executing templates; messages are Go's.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Exec(String),
    #[error("template: no template {name:?} associated with template {root:?}")]
    NoTemplate { name: String, root: String },
}

/// A set of named templates sharing one function map.
#[derive(Clone)]
pub struct Templates {
    pub(crate) trees: HashMap<String, Rc<parse::Tree>>,
    pub(crate) funcs: Rc<HashMap<&'static str, FuncDef>>,
    /// Missing-key behaviour for execution.
    pub missing_key: MissingKey,
    /// Name of the root template (used in Go's "no template" message and by `tpl`).
    pub root_name: String,
    /// Helm wraps `required`/`fail` messages in markers so that it can report
    /// them as `execution error at (file:line:col): message`.
    pub helm_error_markers: bool,
    /// Helm's lint mode: `required` and `fail` log (into [`Templates::lint_log`])
    /// and yield "" instead of failing, so lint sees the rest of the chart.
    pub lint_mode: bool,
    /// What lint mode logged, as slog's text handler prints it; shared by
    /// the clones `tpl` makes.
    pub lint_log: Rc<std::cell::RefCell<Vec<String>>>,
}

/// Start and end markers of a `required`/`fail` message (Helm's warnWrap).
pub const ERR_START: &str = "HELM_ERR_START";
pub const ERR_END: &str = "HELM_ERR_END";

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("templates", &self.trees.keys().collect::<Vec<_>>())
            .field("missing_key", &self.missing_key)
            .finish_non_exhaustive()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// A set with Go's builtins, sprig's text functions and Helm's functions.
    pub fn new() -> Self {
        Templates {
            trees: HashMap::new(),
            funcs: Rc::new(funcs::all()),
            missing_key: MissingKey::Invalid,
            root_name: "gotpl".into(),
            helm_error_markers: false,
            lint_mode: false,
            lint_log: Rc::default(),
        }
    }

    /// A set with only Go's builtin functions (plain `text/template`).
    pub fn go_only() -> Self {
        Templates {
            trees: HashMap::new(),
            funcs: Rc::new(funcs::builtins()),
            missing_key: MissingKey::Invalid,
            root_name: "gotpl".into(),
            helm_error_markers: false,
            lint_mode: false,
            lint_log: Rc::default(),
        }
    }

    /// A set with Go's builtins plus an embedder's function map (docker's CLI
    /// adds `json`, `join`, `split`, … to plain `text/template`); a name in
    /// `extra` replaces the builtin of that name.
    pub fn go_with(extra: impl IntoIterator<Item = (&'static str, FuncDef)>) -> Self {
        let mut funcs = funcs::builtins();
        funcs.extend(extra);
        Templates {
            funcs: Rc::new(funcs),
            ..Self::go_only()
        }
    }

    /// Parses `text` as template `name`, adding it and its `define`s to the set.
    /// Like Go, a later non-empty definition replaces an earlier one.
    pub fn parse(&mut self, name: &str, text: &str) -> Result<(), Error> {
        let funcs = self.funcs.clone();
        let has = move |n: &str| funcs.contains_key(n);
        let trees = parse::parse(name, text, &has).map_err(|e| Error::Parse(e.0))?;
        for t in trees {
            if t.is_empty() && self.trees.contains_key(&t.name) {
                continue;
            }
            self.trees.insert(t.name.clone(), Rc::new(t));
        }
        Ok(())
    }

    /// Whether template `name` is defined.
    pub fn has(&self, name: &str) -> bool {
        self.trees.contains_key(name)
    }

    /// Executes template `name` with `data` as dot.
    pub fn execute(&self, name: &str, data: &Value) -> Result<String, Error> {
        self.execute_with(name, data.clone(), Rc::default())
    }

    /// Executes like [`Templates::execute`] but also returns the output
    /// written before an error (Go leaves it in the writer).
    pub fn execute_partial(&self, name: &str, data: &Value) -> (String, Option<Error>) {
        let Some(tree) = self.trees.get(name) else {
            return (
                String::new(),
                Some(Error::NoTemplate {
                    name: name.into(),
                    root: self.root_name.clone(),
                }),
            );
        };
        let tree = tree.clone();
        let mut st = exec::State::new(self, &tree, data.clone(), Rc::default());
        let r = st.run(data);
        (std::mem::take(&mut st.out), r.err())
    }

    pub(crate) fn execute_with(
        &self,
        name: &str,
        data: Value,
        included: Rc<std::cell::RefCell<HashMap<String, usize>>>,
    ) -> Result<String, Error> {
        let Some(tree) = self.trees.get(name) else {
            return Err(Error::NoTemplate {
                name: name.into(),
                root: self.root_name.clone(),
            });
        };
        let tree = tree.clone();
        let mut st = exec::State::new(self, &tree, data.clone(), included);
        st.run(&data)?;
        Ok(st.out)
    }
}
