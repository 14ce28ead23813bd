//! CEL (Common Expression Language) as Kubernetes uses it: CRD
//! `x-kubernetes-validations` rules ([`rules`]), admission webhook
//! `matchConditions` and `ValidatingAdmissionPolicy` ([`policy`]).
//!
//! Parsing and evaluation are the `cel` crate's (cel-rust, the maintained
//! CEL implementation in Rust). What it lacks and is written here: the
//! conversion of JSON objects to CEL values (integers stay `int`, as
//! Kubernetes types them), the compile-time check that an expression names
//! only the variables its context binds and functions that exist
//! (Kubernetes type-checks; cel-rust would only fail at run time, and only
//! on the branch taken), the Kubernetes library functions real
//! CRDs and policies use (lists: `isSorted`, `sum`, `min`, `max`; regex:
//! `find`, `findAll`; url: `isURL`; quantity: `quantity`, `isQuantity`,
//! comparisons, conversions; the authorizer, [`authz`]), typing of CRD strings by `format` (durations
//! and timestamps), and the
//! limits that keep a hostile expression from taking the server down:
//! cel-rust's recursive-descent parser and tree-walking interpreter use
//! the stack in proportion to an expression's nesting, so every compile
//! and evaluation runs on a thread of its own with a large stack, after
//! refusing expressions longer than [`MAX_LEN`] or nesting more than
//! [`MAX_COMPREHENSIONS`] macros (`all`, `map`, ...). Kubernetes bounds
//! evaluation by an estimated cost; keel bounds it by time instead: an
//! evaluation still running after [`BUDGET`] is reported as over its cost
//! limit, and at most [`MAX_RUNAWAY`] such evaluations may run on before
//! new ones are refused.

pub(crate) mod authz;
pub(crate) mod policy;
pub(crate) mod rules;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use cel::common::ast::{EntryExpr, Expr};
use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, IdedExpr, Program};
use serde_json::Value as Json;

pub use cel::Value;

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 10_000;
/// Deepest nesting of comprehension macros accepted.
pub const MAX_COMPREHENSIONS: usize = 3;
/// How long one evaluation may run.
pub const BUDGET: Duration = Duration::from_secs(1);
/// Evaluations past their budget that may still be running.
pub const MAX_RUNAWAY: usize = 4;
/// Stack of the threads that parse and evaluate (reserved, touched only as used).
const STACK: usize = 256 << 20;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Kubernetes enables cel-go's strings extension; cel-rust ships it.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

static PROGRAMS: LazyLock<Mutex<HashMap<String, Arc<Program>>>> = LazyLock::new(Mutex::default);
static RUNNING_LATE: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` on a thread with a stack deep enough for any accepted
/// expression, waiting at most [`BUDGET`] for it.
pub(crate) async fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if RUNNING_LATE.load(Ordering::Relaxed) >= MAX_RUNAWAY {
        return Err(
            "operation cancelled: too many CEL evaluations over their cost limit are still running"
                .into(),
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let late = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let late2 = late.clone();
    std::thread::Builder::new()
        .name("cel".into())
        .stack_size(STACK)
        .spawn(move || {
            let out = f();
            let _ = tx.send(out);
            if late2.load(Ordering::SeqCst) {
                RUNNING_LATE.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .map_err(|e| format!("start a CEL evaluation: {e}"))?;
    match tokio::time::timeout(BUDGET, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err("internal error: CEL evaluation failed".into()),
        Err(_) => {
            // Counted until the thread ends (the flag is checked after the
            // result is sent, so a thread ending right now may be counted
            // for good: harmless, the count only grows by late runs).
            late.store(true, Ordering::SeqCst);
            RUNNING_LATE.fetch_add(1, Ordering::SeqCst);
            Err("operation cancelled: actual cost limit exceeded".into())
        }
    }
}

/// Runs `f` (a compile, bounded by [`MAX_LEN`]) on a thread with a large
/// stack and waits for it; a panic inside cel-rust becomes an error.
pub(crate) fn run_sync<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("cel".into())
            .stack_size(STACK)
            .spawn_scoped(s, f)
            .map_err(|e| format!("start a CEL compile: {e}"))?
            .join()
            .map_err(|_| "internal error: CEL compile failed".to_string())
    })
}

/// What a compile found out about an expression.
pub(crate) struct Compiled {
    pub program: Arc<Program>,
    /// Free variables the expression reads.
    pub variables: BTreeSet<String>,
}

/// Parses `src` and checks that it reads only `vars`, with Kubernetes'
/// wording (`compilation failed: ERROR: <input>:1:3: ...`). Call it on a
/// [`run`] thread: parsing recurses.
pub(crate) fn compile(src: &str, vars: &[&str]) -> Result<Compiled, String> {
    if src.len() > MAX_LEN {
        return Err(format!(
            "compilation failed: expression is {} bytes long, more than the {MAX_LEN} keel accepts",
            src.len()
        ));
    }
    let cached = PROGRAMS.lock().ok().and_then(|m| m.get(src).cloned());
    let program = if let Some(p) = cached {
        p
    } else {
        let p = Arc::new(
            ENV.compile(src)
                .map_err(|e| format!("compilation failed: {e}"))?,
        );
        if let Ok(mut m) = PROGRAMS.lock() {
            if m.len() > 4096 {
                m.clear();
            }
            m.insert(src.to_string(), p.clone());
        }
        p
    };
    let mut walk = Walk::default();
    walk.expr(program.expression(), &mut Vec::new(), 0);
    if walk.comprehensions > MAX_COMPREHENSIONS {
        return Err(format!(
            "compilation failed: macros (all, exists, map, filter...) nest {} deep, more than the {MAX_COMPREHENSIONS} keel accepts",
            walk.comprehensions
        ));
    }
    let undeclared = |name: &str, id: u64| {
        format!(
            "compilation failed: ERROR: {}: undeclared reference to '{name}' (in container ''){}",
            position(&program, src, id).0,
            position(&program, src, id).1
        )
    };
    if let Some((v, id)) = walk
        .first_use
        .iter()
        .find(|(v, _)| !vars.contains(&v.as_str()))
    {
        return Err(undeclared(v, *id));
    }
    if let Some((f, _, id)) = walk
        .calls
        .iter()
        .find(|(f, member, _)| !known_function(f, *member))
    {
        return Err(undeclared(f, *id));
    }
    Ok(Compiled {
        program,
        variables: walk.variables,
    })
}

/// cel-go's location of node `id` and the snippet under it:
/// (`<input>:LINE:COL`, `"\n | line\n | ...^"`).
fn position(program: &Program, src: &str, id: u64) -> (String, String) {
    let Some((start, _)) = program.source_info().offset_for(id) else {
        return ("<input>:1:1".into(), String::new());
    };
    let start = usize::try_from(start).unwrap_or(0);
    let mut line_start = 0;
    for (n, line) in src.split_inclusive('\n').enumerate() {
        if start < line_start + line.len() {
            let col = src[line_start..start].chars().count();
            let text = line.trim_end_matches(['\n', '\r']);
            return (
                format!("<input>:{}:{}", n + 1, col + 1),
                format!("\n | {text}\n | {}^", ".".repeat(col)),
            );
        }
        line_start += line.len();
    }
    ("<input>:1:1".into(), String::new())
}

/// Functions known, by name and call style: cel-rust has no list of what
/// an environment declares, so a name is looked up once by calling it
/// with no arguments (`name()`, or `null.name()` for a member call) and
/// seeing whether the interpreter knows it (a wrong-argument error) or not.
static KNOWN: LazyLock<Mutex<HashMap<(String, bool), bool>>> = LazyLock::new(Mutex::default);

fn known_function(name: &str, member: bool) -> bool {
    // Operators (`_+_`, `!_`, `@in`, ...) are the parser's own.
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return true;
    }
    let key = (name.to_string(), member);
    if let Some(k) = KNOWN.lock().ok().and_then(|m| m.get(&key).copied()) {
        return k;
    }
    let probe = if member {
        format!("null.{name}()")
    } else {
        format!("{name}()")
    };
    let known = match ENV.compile(&probe) {
        // Not callable this way by the parser's rules (a macro): not ours to refuse.
        Err(_) => true,
        Ok(p) => {
            let mut ctx = Context::with_env(ENV.clone());
            library(&mut ctx);
            !matches!(p.execute(&ctx), Err(ExecutionError::UndeclaredReference(n)) if n.as_str() == name)
        }
    };
    if let Ok(mut m) = KNOWN.lock()
        && m.len() < 4096
    {
        m.insert(key, known);
    }
    known
}

const TYPE_NAMES: [&str; 10] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

#[derive(Default)]
struct Walk {
    variables: BTreeSet<String>,
    /// Each free variable with the node of its first use.
    first_use: Vec<(String, u64)>,
    /// Functions called: name, whether as a member (`x.f()`), node.
    calls: Vec<(String, bool, u64)>,
    comprehensions: usize,
}

impl Walk {
    fn expr(&mut self, e: &IdedExpr, bound: &mut Vec<String>, depth: usize) {
        match &e.expr {
            // Type names are identifiers CEL declares (`type(x) == map`).
            Expr::Ident(name) if TYPE_NAMES.contains(&name.as_str()) => {}
            Expr::Ident(name) => {
                if !bound.iter().any(|b| b == name) && self.variables.insert(name.clone()) {
                    self.first_use.push((name.clone(), e.id));
                }
            }
            Expr::Call(c) => {
                self.calls
                    .push((c.func_name.clone(), c.target.is_some(), e.id));
                if let Some(t) = &c.target {
                    self.expr(t, bound, depth);
                }
                for a in &c.args {
                    self.expr(a, bound, depth);
                }
            }
            Expr::Comprehension(c) => {
                self.comprehensions = self.comprehensions.max(depth + 1);
                self.expr(&c.iter_range, bound, depth);
                self.expr(&c.accu_init, bound, depth);
                let n = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.clone());
                bound.push(c.accu_var.clone());
                for x in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.expr(x, bound, depth + 1);
                }
                bound.truncate(n);
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.expr(x, bound, depth);
                }
            }
            Expr::Map(m) => {
                for x in &m.entries {
                    self.entry(&x.expr, bound, depth);
                }
            }
            Expr::Struct(s) => {
                for x in &s.entries {
                    self.entry(&x.expr, bound, depth);
                }
            }
            Expr::Select(s) => self.expr(&s.operand, bound, depth),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn entry(&mut self, e: &EntryExpr, bound: &mut Vec<String>, depth: usize) {
        match e {
            EntryExpr::StructField(f) => self.expr(&f.value, bound, depth),
            EntryExpr::MapEntry(m) => {
                self.expr(&m.key, bound, depth);
                self.expr(&m.value, bound, depth);
            }
        }
    }
}

/// A JSON value as CEL sees it: integers are `int` (Kubernetes' schemas
/// type them so), other numbers `double`, objects maps with string keys.
pub fn from_json(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Float(n.as_f64().unwrap_or_default()), Value::Int),
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(from_json).collect())),
        Json::Object(o) => {
            let map: HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), from_json(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A JSON value typed by its `OpenAPI` schema, as Kubernetes types CRD
/// values for CEL: strings of format `duration` are durations, `date` and
/// `date-time` timestamps (left strings when they do not parse).
pub fn from_json_typed(v: &Json, s: Option<&Json>) -> Value {
    let Some(s) = s else { return from_json(v) };
    match v {
        Json::String(x) => {
            let format = s.get("format").and_then(Json::as_str).unwrap_or_default();
            let typed = match format {
                "duration" => keel_go::duration::parse_duration(x)
                    .ok()
                    .map(|n| Value::Duration(chrono::Duration::nanoseconds(n))),
                "date-time" => chrono::DateTime::parse_from_rfc3339(x)
                    .ok()
                    .map(Value::Timestamp),
                "date" => chrono::NaiveDate::parse_from_str(x, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| Value::Timestamp(t.and_utc().fixed_offset())),
                _ => None,
            };
            typed.unwrap_or_else(|| from_json(v))
        }
        Json::Array(a) => {
            let items = s.get("items");
            Value::List(Arc::new(
                a.iter().map(|x| from_json_typed(x, items)).collect(),
            ))
        }
        Json::Object(o) => {
            let props = s.get("properties");
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            let map: HashMap<Key, Value> = o
                .iter()
                .map(|(k, x)| {
                    let sub = props.and_then(|p| p.get(k)).or(extra);
                    (Key::String(Arc::new(k.clone())), from_json_typed(x, sub))
                })
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
        _ => from_json(v),
    }
}

/// Evaluates a compiled expression with `vars` bound. Call it on a [`run`]
/// thread: evaluation recurses.
pub(crate) fn eval(program: &Program, vars: &[(&str, Value)]) -> Result<Value, String> {
    let mut ctx = Context::with_env(ENV.clone());
    library(&mut ctx);
    for (k, v) in vars {
        ctx.add_variable_from_value(*k, v.clone());
    }
    program.execute(&ctx).map_err(|e| describe(&e))
}

/// An evaluation error worded as cel-go words the common ones.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::UndeclaredReference(r) => format!("undeclared reference to '{r}'"),
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        ExecutionError::Overflow(..) => "integer overflow".into(),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {i:?}"),
        other => other.to_string(),
    }
}

/// Kubernetes' CEL libraries that cel-rust does not ship: lists
/// (`isSorted`, `sum`, `min`, `max`), regex (`find`, `findAll`), url
/// (`isURL`) and quantity.
fn library(ctx: &mut Context) {
    quantities(ctx);
    authz::library(ctx);
    let _ = ctx.add_function("isURL", |s: Arc<String>| is_url(&s));
    let _ = ctx.add_function("isSorted", |This(l): This<Arc<Vec<Value>>>| {
        l.windows(2).all(|w| {
            w[0].partial_cmp(&w[1])
                .is_some_and(std::cmp::Ordering::is_le)
        })
    });
    let _ = ctx.add_function(
        "sum",
        |This(l): This<Arc<Vec<Value>>>| -> Result<Value, ExecutionError> {
            let mut acc: Option<Value> = None;
            for x in l.iter() {
                acc = Some(match (acc, x) {
                    (None, v) => v.clone(),
                    (Some(Value::Int(a)), Value::Int(b)) => {
                        Value::Int(a.checked_add(*b).ok_or_else(|| {
                            ExecutionError::function_error("sum", "integer overflow")
                        })?)
                    }
                    (Some(Value::Float(a)), Value::Float(b)) => Value::Float(a + b),
                    (Some(Value::UInt(a)), Value::UInt(b)) => {
                        Value::UInt(a.checked_add(*b).ok_or_else(|| {
                            ExecutionError::function_error("sum", "integer overflow")
                        })?)
                    }
                    (Some(a), b) => {
                        return Err(ExecutionError::function_error(
                            "sum",
                            format!("no such overload: {a:?} + {b:?}"),
                        ));
                    }
                });
            }
            Ok(acc.unwrap_or(Value::Int(0)))
        },
    );
    for (name, want) in [
        ("min", std::cmp::Ordering::Less),
        ("max", std::cmp::Ordering::Greater),
    ] {
        let _ = ctx.add_function(
            name,
            move |This(l): This<Arc<Vec<Value>>>| -> Result<Value, ExecutionError> {
                let mut best = l.first().cloned().ok_or_else(|| {
                    ExecutionError::function_error(name, "cannot be called on an empty list")
                })?;
                for x in l.iter().skip(1) {
                    match x.partial_cmp(&best) {
                        Some(o) if o == want => best = x.clone(),
                        Some(_) => {}
                        None => return Err(ExecutionError::ValuesNotComparable(best, x.clone())),
                    }
                }
                Ok(best)
            },
        );
    }
    let _ = ctx.add_function(
        "find",
        |This(s): This<Arc<String>>, re: Arc<String>| -> Result<Value, ExecutionError> {
            let re = regex(&re)?;
            Ok(Value::String(Arc::new(
                re.find(&s)
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
            )))
        },
    );
    let _ = ctx.add_function(
        "findAll",
        |This(s): This<Arc<String>>, re: Arc<String>| -> Result<Value, ExecutionError> {
            let re = regex(&re)?;
            Ok(Value::List(Arc::new(
                re.find_iter(&s)
                    .map(|m| Value::String(Arc::new(m.as_str().to_string())))
                    .collect(),
            )))
        },
    );
}

/// A resource quantity (`quantity('1Gi')`), compared by value.
#[derive(Debug)]
struct Quantity(f64);

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Quantity {}

impl cel::objects::Opaque for Quantity {
    fn runtime_type_name(&self) -> &'static str {
        "kubernetes.Quantity"
    }
}

fn quantity_of(v: &Value) -> Result<f64, ExecutionError> {
    match v {
        Value::Opaque(o) => o
            .downcast_ref::<Quantity>()
            .map(|q| q.0)
            .ok_or_else(|| ExecutionError::function_error("quantity", "not a quantity")),
        Value::Int(i) => Ok(i64_f64(*i)),
        _ => Err(ExecutionError::function_error("quantity", "not a quantity")),
    }
}

#[allow(clippy::cast_precision_loss)] // quantities compare as Kubernetes' approximate floats
fn i64_f64(i: i64) -> f64 {
    i as f64
}

/// Kubernetes' quantity library: `quantity`, `isQuantity`, comparisons
/// and conversions (values compared as floats).
fn quantities(ctx: &mut Context) {
    let _ = ctx.add_function(
        "quantity",
        |s: Arc<String>| -> Result<Value, ExecutionError> {
            crate::validate::parse_quantity(&s)
                .map(|q| Value::Opaque(Arc::new(Quantity(q))))
                .map_err(|e| ExecutionError::function_error("quantity", e))
        },
    );
    let _ = ctx.add_function("isQuantity", |s: Arc<String>| {
        crate::validate::parse_quantity(&s).is_ok()
    });
    let cmp = |a: &Value, b: &Value| -> Result<std::cmp::Ordering, ExecutionError> {
        let (a, b) = (quantity_of(a)?, quantity_of(b)?);
        a.partial_cmp(&b)
            .ok_or_else(|| ExecutionError::function_error("compareTo", "not comparable"))
    };
    let _ = ctx.add_function("isLessThan", move |This(a): This<Value>, b: Value| {
        cmp(&a, &b).map(std::cmp::Ordering::is_lt)
    });
    let _ = ctx.add_function("isGreaterThan", move |This(a): This<Value>, b: Value| {
        cmp(&a, &b).map(std::cmp::Ordering::is_gt)
    });
    let _ = ctx.add_function("compareTo", move |This(a): This<Value>, b: Value| {
        cmp(&a, &b).map(|o| o as i64)
    });
    let _ = ctx.add_function("asApproximateFloat", |This(a): This<Value>| quantity_of(&a));
    let _ = ctx.add_function("isInteger", |This(a): This<Value>| {
        quantity_of(&a).map(|q| q.fract() == 0.0 && q.abs() < 9.2e18)
    });
    let _ = ctx.add_function(
        "asInteger",
        |This(a): This<Value>| -> Result<i64, ExecutionError> {
            let q = quantity_of(&a)?;
            if q.fract() != 0.0 || q.abs() >= 9.2e18 {
                return Err(ExecutionError::function_error(
                    "asInteger",
                    "cannot convert value to integer",
                ));
            }
            #[allow(clippy::cast_possible_truncation)] // integral and in range, checked above
            Ok(q as i64)
        },
    );
}

/// Go's `url.ParseRequestURI` succeeding: an absolute URI or an absolute
/// path, without spaces or control characters.
fn is_url(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host_ok = rest.strip_prefix("//").is_none_or(|r| {
        !r.split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .contains(['<', '>', '"', '{', '}', '|', '\\', '^', '`'])
    });
    scheme_ok && host_ok
}

fn regex(re: &str) -> Result<regex::Regex, ExecutionError> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ExecutionError::function_error("find", e.to_string()))
}

/// Compiles then evaluates `src` in one [`run`]: for one-off expressions.
#[cfg(test)]
pub(crate) async fn evaluate(src: &str, vars: Vec<(&'static str, Value)>) -> Result<Value, String> {
    let src = src.to_string();
    run(move || {
        let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
        let c = compile(&src, &names)?;
        eval(&c.program, &vars)
    })
    .await?
}

#[cfg(test)]
mod tests;
