//! The PromQL evaluator over a [`Store`]: expressions parsed by
//! `promql-parser` (GreptimeDB's port of Prometheus' grammar) are
//! evaluated step by step as Prometheus' engine does. Each selector's
//! samples for the whole query range are read from the store once; every
//! step then binary-searches them.
//!
//! Semantics follow Prometheus 3: instant selectors take the newest sample
//! in `(t - lookback, t]` unless it is a staleness marker; range selectors
//! take the samples in `(t - range, t]`, markers left out.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use promql_parser::label::Matcher;
use promql_parser::parser::{
    AtModifier, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset,
    VectorMatchCardinality, VectorSelector,
};

use crate::labels::{Labels, NAME};
use crate::store::{SeriesData, Store, is_stale};

/// Prometheus' default lookback delta: 5 minutes.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The query does not parse or is not valid PromQL (Prometheus: bad_data).
    #[error("{0}")]
    BadData(String),
    /// Valid PromQL keel does not evaluate (yet).
    #[error("{0} is not supported by keel")]
    Unsupported(String),
    /// Evaluation failed on the data (Prometheus: execution).
    #[error("{0}")]
    Execution(String),
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub v: f64,
}

/// One series of a range vector or of a range query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// What an expression evaluates to at one instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Parses a query.
pub fn parse(query: &str) -> Result<Expr, EvalError> {
    promql_parser::parser::parse(query).map_err(EvalError::BadData)
}

/// Evaluates `query` at `t` (ms since the epoch).
pub fn instant(store: &Store, query: &str, t: i64) -> Result<Value, EvalError> {
    let expr = parse(query)?;
    let ev = Evaluator::new(store, t, t);
    let v = ev.eval(&expr, t)?;
    if let Value::Vector(v) = &v {
        check_unique(v)?;
    }
    Ok(v)
}

/// Evaluates `query` at `start`, `start + step`, ... up to `end` (ms):
/// series sorted by labels, as Prometheus returns them.
pub fn range(
    store: &Store,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Vec<Series>, EvalError> {
    let expr = parse(query)?;
    let vt = expr.value_type();
    if !matches!(
        vt,
        promql_parser::parser::value::ValueType::Scalar
            | promql_parser::parser::value::ValueType::Vector
    ) {
        return Err(EvalError::BadData(format!(
            "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
            match vt {
                promql_parser::parser::value::ValueType::Matrix => "range vector",
                _ => "string",
            }
        )));
    }
    let ev = Evaluator::new(store, start, end);
    let mut out: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
    let mut t = start;
    while t <= end {
        match ev.eval(&expr, t)? {
            Value::Scalar(v) => out.entry(Labels::default()).or_default().push((t, v)),
            Value::Vector(v) => {
                check_unique(&v)?;
                for s in v {
                    out.entry(s.labels).or_default().push((t, s.v));
                }
            }
            other => {
                return Err(EvalError::Execution(format!(
                    "unexpected {} result",
                    other.type_name()
                )));
            }
        }
        t += step;
    }
    let mut series: Vec<Series> = out
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}

fn check_unique(v: &[Sample]) -> Result<(), EvalError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(EvalError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}

/// Evaluates expressions of one query (the range `[start, end]`).
pub struct Evaluator<'a> {
    store: &'a Store,
    start: i64,
    end: i64,
    pub lookback: i64,
    /// Samples of each selector (keyed by its address in the AST).
    cache: RefCell<HashMap<usize, Rc<Vec<SeriesData>>>>,
}

fn offset_ms(o: Option<&Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn system_ms(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn name_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut m = vs.matchers.matchers.clone();
    if let Some(n) = &vs.name {
        m.push(Matcher::new(promql_parser::label::MatchOp::Equal, NAME, n));
    }
    m
}

impl<'a> Evaluator<'a> {
    pub fn new(store: &'a Store, start: i64, end: i64) -> Self {
        Evaluator {
            store,
            start,
            end,
            lookback: LOOKBACK_MS,
            cache: RefCell::default(),
        }
    }

    /// The reference time of a selector at step `t`: `@` pins it, then
    /// `offset` moves it back.
    fn ref_time(&self, at: Option<&AtModifier>, off: Option<&Offset>, t: i64) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(s)) => system_ms(*s),
        };
        base - offset_ms(off)
    }

    /// Samples of `vs` covering every step of the query, `range` before.
    fn fetch(&self, vs: &VectorSelector, range: i64) -> Rc<Vec<SeriesData>> {
        let key = std::ptr::from_ref(vs) as usize;
        if let Some(d) = self.cache.borrow().get(&key) {
            return d.clone();
        }
        let first = self.ref_time(vs.at.as_ref(), vs.offset.as_ref(), self.start);
        let last = self.ref_time(vs.at.as_ref(), vs.offset.as_ref(), self.end);
        let mut data = self.store.select(
            &name_matchers(vs),
            &vs.matchers.or_matchers,
            first - range + 1,
            last,
        );
        data.sort_by(|a, b| a.labels.cmp(&b.labels));
        let data = Rc::new(data);
        self.cache.borrow_mut().insert(key, data.clone());
        data
    }

    fn vector_selector(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        let data = self.fetch(vs, self.lookback);
        let rt = self.ref_time(vs.at.as_ref(), vs.offset.as_ref(), t);
        let mut out = Vec::new();
        for s in data.iter() {
            let i = s.samples.partition_point(|(ts, _)| *ts <= rt);
            if i == 0 {
                continue;
            }
            let (ts, v) = s.samples[i - 1];
            if ts > rt - self.lookback && !is_stale(v) {
                out.push(Sample {
                    labels: s.labels.clone(),
                    v,
                });
            }
        }
        out
    }

    /// The samples of each series in `(ref - range, ref]`, markers left out.
    fn matrix_selector(&self, ms: &MatrixSelector, t: i64) -> Vec<Series> {
        let vs = &ms.vs;
        let range = ms.range.as_millis() as i64;
        let data = self.fetch(vs, range);
        let rt = self.ref_time(vs.at.as_ref(), vs.offset.as_ref(), t);
        let mut out = Vec::new();
        for s in data.iter() {
            let lo = s.samples.partition_point(|(ts, _)| *ts <= rt - range);
            let hi = s.samples.partition_point(|(ts, _)| *ts <= rt);
            let points: Vec<(i64, f64)> = s.samples[lo..hi]
                .iter()
                .copied()
                .filter(|(_, v)| !is_stale(*v))
                .collect();
            if !points.is_empty() {
                out.push(Series {
                    labels: s.labels.clone(),
                    points,
                });
            }
        }
        out
    }

    /// Evaluates `e` at step `t` (ms).
    pub fn eval(&self, e: &Expr, t: i64) -> Result<Value, EvalError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.vector_selector(vs, t))),
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.matrix_selector(ms, t))),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            labels: s.labels.without_name(),
                            v: -s.v,
                        })
                        .collect(),
                )),
                other => Err(EvalError::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or vector, got: {}",
                    other.type_name()
                ))),
            },
            Expr::Aggregate(a) => {
                let param = match &a.param {
                    Some(p) => Some(self.eval(p, t)?),
                    None => None,
                };
                let Value::Vector(input) = self.eval(&a.expr, t)? else {
                    return Err(EvalError::BadData("aggregation over a non-vector".into()));
                };
                crate::funcs::aggregate(&a.op.to_string(), param, a.modifier.as_ref(), input)
                    .map(Value::Vector)
            }
            Expr::Binary(b) => self.binary(b, t),
            Expr::Call(c) => self.call(c, t),
            Expr::Subquery(_) => Err(EvalError::Unsupported("a subquery".into())),
            Expr::Extension(_) => Err(EvalError::Unsupported("an extension expression".into())),
        }
    }

    fn call(&self, c: &Call, t: i64) -> Result<Value, EvalError> {
        let name = c.func.name;
        let args = &c.args.args;
        if let Some(Expr::MatrixSelector(ms)) = args.first().map(AsRef::as_ref) {
            let series = self.matrix_selector(ms, t);
            let rt = self.ref_time(ms.vs.at.as_ref(), ms.vs.offset.as_ref(), t);
            let range = ms.range.as_millis() as i64;
            let extra: Vec<f64> = args[1..]
                .iter()
                .map(|a| match self.eval(a, t)? {
                    Value::Scalar(v) => Ok(v),
                    other => Err(EvalError::BadData(format!(
                        "expected a scalar argument to {name}, got {}",
                        other.type_name()
                    ))),
                })
                .collect::<Result<_, _>>()?;
            let mut out = Vec::new();
            for s in series {
                if let Some(v) = crate::funcs::over_range(name, &s.points, rt - range, rt, &extra)?
                {
                    out.push(Sample {
                        labels: s.labels.without_name(),
                        v,
                    });
                }
            }
            return Ok(Value::Vector(out));
        }
        if let Some(Expr::Subquery(_)) = args.first().map(AsRef::as_ref) {
            return Err(EvalError::Unsupported("a subquery".into()));
        }
        let vals: Vec<Value> = args
            .iter()
            .map(|a| self.eval(a, t))
            .collect::<Result<_, _>>()?;
        crate::funcs::call(name, vals, t)
    }

    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value, EvalError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let (v, keep) = crate::funcs::scalar_op(&op, l, r)?;
                Ok(Value::Scalar(if crate::funcs::is_comparison(&op) {
                    f64::from(u8::from(keep))
                } else {
                    v
                }))
            }
            (Value::Vector(v), Value::Scalar(s)) => {
                Ok(Value::Vector(vector_scalar(&op, v, s, false, return_bool)?))
            }
            (Value::Scalar(s), Value::Vector(v)) => {
                Ok(Value::Vector(vector_scalar(&op, v, s, true, return_bool)?))
            }
            (Value::Vector(l), Value::Vector(r)) => {
                let (card, matching) = match &b.modifier {
                    Some(m) => (m.card.clone(), m.matching.clone()),
                    None => (VectorMatchCardinality::OneToOne, None),
                };
                if matches!(op.as_str(), "and" | "or" | "unless") {
                    return Ok(Value::Vector(set_op(&op, l, r, matching.as_ref())));
                }
                Ok(Value::Vector(vector_vector(
                    &op,
                    l,
                    r,
                    &card,
                    matching.as_ref(),
                    return_bool,
                )?))
            }
            (l, r) => Err(EvalError::BadData(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            ))),
        }
    }
}

/// `vector op scalar` (or `scalar op vector` when `swap`): comparisons
/// filter and keep the vector's value, arithmetic drops the metric name.
fn vector_scalar(
    op: &str,
    v: Vec<Sample>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let cmp = crate::funcs::is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for smp in v {
        let (l, r) = if swap { (s, smp.v) } else { (smp.v, s) };
        let (mut value, keep) = crate::funcs::scalar_op(op, l, r)?;
        if cmp {
            value = smp.v;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        let labels = if !cmp || return_bool {
            smp.labels.without_name()
        } else {
            smp.labels
        };
        out.push(Sample { labels, v: value });
    }
    Ok(out)
}

/// The labels two samples are matched on.
fn signature(l: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => l.filter(|k| on.labels.iter().any(|x| x == k)),
        Some(LabelModifier::Exclude(ign)) => {
            l.filter(|k| k != NAME && !ign.labels.iter().any(|x| x == k))
        }
        None => l.without_name(),
    }
}

fn set_op(
    op: &str,
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: Option<&LabelModifier>,
) -> Vec<Sample> {
    let rsigs: std::collections::HashSet<Labels> =
        r.iter().map(|s| signature(&s.labels, matching)).collect();
    match op {
        "and" => l
            .into_iter()
            .filter(|s| rsigs.contains(&signature(&s.labels, matching)))
            .collect(),
        "unless" => l
            .into_iter()
            .filter(|s| !rsigs.contains(&signature(&s.labels, matching)))
            .collect(),
        _ => {
            let lsigs: std::collections::HashSet<Labels> =
                l.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !lsigs.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

/// `vector op vector` with Prometheus' matching: one-to-one by default,
/// many-to-one with `group_left`, one-to-many with `group_right`.
fn vector_vector(
    op: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    card: &VectorMatchCardinality,
    matching: Option<&LabelModifier>,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let cmp = crate::funcs::is_comparison(op);
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    // Iterate over the "many" side; index the "one" side.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut index: HashMap<Labels, &Sample> = HashMap::new();
    for s in &one {
        let sig = signature(&s.labels, matching);
        if index.insert(sig.clone(), s).is_some() {
            let side = if one_to_many { "left" } else { "right" };
            return Err(EvalError::Execution(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{}];many-to-many matching not allowed: matching labels must be unique on one side",
                s.labels
            )));
        }
    }
    let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut matched: std::collections::HashSet<Labels> = std::collections::HashSet::new();
    let mut seen: std::collections::HashSet<Labels> = std::collections::HashSet::new();
    let mut out = Vec::new();
    for m in &many {
        let sig = signature(&m.labels, matching);
        let Some(o) = index.get(&sig) else {
            continue;
        };
        let (vl, vr) = if one_to_many { (o.v, m.v) } else { (m.v, o.v) };
        let (mut value, keep) = crate::funcs::scalar_op(op, vl, vr)?;
        if cmp {
            value = vl;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        // Prometheus' resultMetric.
        let mut labels = if !cmp || return_bool {
            m.labels.without_name()
        } else {
            m.labels.clone()
        };
        if one_to_one {
            labels = match matching {
                Some(LabelModifier::Include(on)) => {
                    labels.filter(|k| on.labels.iter().any(|x| x == k))
                }
                Some(LabelModifier::Exclude(ign)) => {
                    labels.filter(|k| !ign.labels.iter().any(|x| x == k))
                }
                None => labels,
            };
            if !matched.insert(sig) {
                return Err(EvalError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
        }
        for ln in &include {
            labels = labels.with(ln, o.labels.value(ln));
        }
        if !one_to_one && !seen.insert(labels.clone()) {
            return Err(EvalError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample { labels, v: value });
    }
    Ok(out)
}
