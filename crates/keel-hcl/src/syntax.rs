//! keel's HCL syntax tree: bodies, attributes, blocks and expressions with
//! source ranges, built from hcl-edit's parse of the native syntax (which keeps
//! spans and the whole expression grammar) or from the JSON syntax.
//! The evaluator works on this tree, so both syntaxes evaluate alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use hcl_edit::Span;
use hcl_edit::expr::{self as he, BinaryOperator, Expression, TraversalOperator, UnaryOperator};
use hcl_edit::structure as hs;
use hcl_edit::template as ht;

use crate::diag::{Diagnostic, Diagnostics, Pos, Range};
use crate::num::Number;
use crate::value::Value;

/// Line starts of a source, to turn byte offsets into positions.
#[derive(Clone, Debug)]
pub struct LineIndex {
    name: Arc<str>,
    text: Arc<str>,
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(name: &str, text: &str) -> Self {
        let mut starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            }
        }
        LineIndex {
            name: Arc::from(name),
            text: Arc::from(text),
            starts,
        }
    }

    pub fn pos(&self, byte: usize) -> Pos {
        let byte = byte.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= byte).max(1);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..byte)
            .map_or(byte - start, |s| s.chars().count())
            + 1;
        Pos {
            line,
            column: col,
            byte,
        }
    }

    pub fn range(&self, r: std::ops::Range<usize>) -> Range {
        Range {
            filename: self.name.clone(),
            start: self.pos(r.start),
            end: self.pos(r.end),
        }
    }

    pub fn span(&self, s: &impl Span) -> Range {
        match s.span() {
            Some(r) => self.range(r),
            None => self.range(0..0),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    NotEq,
    Less,
    LessEq,
    Greater,
    GreaterEq,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

/// One step of a traversal.
#[derive(Clone, Debug)]
pub enum Step {
    Attr(String, Range),
    Index(Expr, Range),
}

/// A template part after strip markers were applied.
#[derive(Clone, Debug)]
pub enum TPart {
    Lit(String),
    Interp(Expr),
    If(Expr, Vec<TPart>, Vec<TPart>),
    For {
        key: Option<String>,
        value: String,
        coll: Expr,
        body: Vec<TPart>,
    },
}

/// An expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Literal(Value, Range),
    /// `"${x}"` alone: the value of `x` itself, not converted to string.
    Wrap(Box<Expr>, Range),
    Template(Vec<TPart>, Range),
    Tuple(Vec<Expr>, Range),
    /// Keys: `ObjKey::Name` for bare identifiers, else an expression.
    Object(Vec<(ObjKey, Expr)>, Range),
    Var(String, Range),
    Traverse(Box<Expr>, Vec<Step>, Range),
    /// Source, then the expression applied to each element (`SplatItem` inside).
    Splat(Box<Expr>, Box<Expr>, Range),
    SplatItem(Range),
    Call {
        name: String,
        args: Vec<Expr>,
        expand: bool,
        range: Range,
        name_range: Range,
    },
    Cond(Box<Expr>, Box<Expr>, Box<Expr>, Range),
    Unary(UnOp, Box<Expr>, Range),
    Binary(BinOp, Box<Expr>, Box<Expr>, Range),
    For(Box<ForExpr>),
    Paren(Box<Expr>, Range),
}

#[derive(Clone, Debug)]
pub enum ObjKey {
    Name(String, Range),
    Expr(Expr),
}

#[derive(Clone, Debug)]
pub struct ForExpr {
    pub key_var: Option<String>,
    pub value_var: String,
    pub coll: Expr,
    pub key: Option<Expr>,
    pub value: Expr,
    pub cond: Option<Expr>,
    pub group: bool,
    pub range: Range,
}

impl Expr {
    pub fn range(&self) -> &Range {
        match self {
            Expr::Literal(_, r)
            | Expr::Wrap(_, r)
            | Expr::Template(_, r)
            | Expr::Tuple(_, r)
            | Expr::Object(_, r)
            | Expr::Var(_, r)
            | Expr::Traverse(_, _, r)
            | Expr::Splat(_, _, r)
            | Expr::SplatItem(r)
            | Expr::Cond(_, _, _, r)
            | Expr::Unary(_, _, r)
            | Expr::Binary(_, _, _, r)
            | Expr::Paren(_, r) => r,
            Expr::Call { range, .. } => range,
            Expr::For(f) => &f.range,
        }
    }

    /// The static traversals (variable references) inside, as
    /// `hcl.Expression.Variables()` finds them: root name plus static steps.
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        self.collect_refs(&mut out, &[]);
        out
    }

    fn collect_refs(&self, out: &mut Vec<Reference>, bound: &[&str]) {
        match self {
            Expr::Literal(..) | Expr::SplatItem(_) => {}
            Expr::Var(name, r) => {
                if !bound.contains(&name.as_str()) {
                    out.push(Reference {
                        root: name.clone(),
                        steps: Vec::new(),
                        range: r.clone(),
                    });
                }
            }
            Expr::Traverse(base, steps, r) => {
                if let Expr::Var(name, _) = &**base {
                    if !bound.contains(&name.as_str()) {
                        let mut st = Vec::new();
                        for s in steps {
                            match s {
                                Step::Attr(a, _) => st.push(RefStep::Attr(a.clone())),
                                Step::Index(Expr::Literal(v, _), _) => match &v.kind {
                                    crate::value::Kind::String(s) => {
                                        st.push(RefStep::Key(s.clone()));
                                    }
                                    crate::value::Kind::Number(n) => match n.to_i64() {
                                        Some(i) => st.push(RefStep::Index(i)),
                                        None => break,
                                    },
                                    _ => break,
                                },
                                Step::Index(..) => break,
                            }
                        }
                        out.push(Reference {
                            root: name.clone(),
                            steps: st,
                            range: r.clone(),
                        });
                    }
                } else {
                    base.collect_refs(out, bound);
                }
                for s in steps {
                    if let Step::Index(e, _) = s {
                        e.collect_refs(out, bound);
                    }
                }
            }
            Expr::Wrap(e, _) | Expr::Paren(e, _) | Expr::Unary(_, e, _) => {
                e.collect_refs(out, bound);
            }
            Expr::Splat(a, b, _) => {
                a.collect_refs(out, bound);
                b.collect_refs(out, bound);
            }
            Expr::Template(parts, _) => collect_tparts(parts, out, bound),
            Expr::Tuple(v, _) => v.iter().for_each(|e| e.collect_refs(out, bound)),
            Expr::Object(v, _) => {
                for (k, e) in v {
                    if let ObjKey::Expr(k) = k {
                        // A bare traversal as key is a literal name in HCL.
                        if !matches!(k, Expr::Var(..)) {
                            k.collect_refs(out, bound);
                        }
                    }
                    e.collect_refs(out, bound);
                }
            }
            Expr::Call { args, .. } => args.iter().for_each(|e| e.collect_refs(out, bound)),
            Expr::Cond(a, b, c, _) => {
                a.collect_refs(out, bound);
                b.collect_refs(out, bound);
                c.collect_refs(out, bound);
            }
            Expr::Binary(_, a, b, _) => {
                a.collect_refs(out, bound);
                b.collect_refs(out, bound);
            }
            Expr::For(f) => {
                f.coll.collect_refs(out, bound);
                let mut inner: Vec<&str> = bound.to_vec();
                inner.push(&f.value_var);
                if let Some(k) = &f.key_var {
                    inner.push(k);
                }
                for e in [Some(&f.value), f.key.as_ref(), f.cond.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    e.collect_refs(out, &inner);
                }
            }
        }
    }

    /// The name, when the expression is a bare identifier (`string`, `foo`).
    pub fn as_keyword(&self) -> Option<&str> {
        match self {
            Expr::Var(n, _) => Some(n),
            _ => None,
        }
    }

    /// Static list of traversals (`depends_on = [a.b, c]`) as strings.
    pub fn as_traversal_list(&self) -> Option<Vec<(Reference, Range)>> {
        match self {
            Expr::Tuple(items, _) => items
                .iter()
                .map(|e| e.as_traversal().map(|t| (t, e.range().clone())))
                .collect(),
            _ => None,
        }
    }

    /// A static traversal (`aws_instance.a`, `module.x`, `a.b[0]`).
    pub fn as_traversal(&self) -> Option<Reference> {
        match self {
            Expr::Var(..) | Expr::Traverse(..) => {
                let r = self.references();
                if r.len() == 1 {
                    r.into_iter().next()
                } else {
                    None
                }
            }
            Expr::Wrap(e, _) | Expr::Paren(e, _) => e.as_traversal(),
            _ => None,
        }
    }
}

fn collect_tparts(parts: &[TPart], out: &mut Vec<Reference>, bound: &[&str]) {
    for p in parts {
        match p {
            TPart::Lit(_) => {}
            TPart::Interp(e) => e.collect_refs(out, bound),
            TPart::If(c, a, b) => {
                c.collect_refs(out, bound);
                collect_tparts(a, out, bound);
                collect_tparts(b, out, bound);
            }
            TPart::For {
                key,
                value,
                coll,
                body,
            } => {
                coll.collect_refs(out, bound);
                let mut inner: Vec<&str> = bound.to_vec();
                inner.push(value);
                if let Some(k) = key {
                    inner.push(k);
                }
                collect_tparts(body, out, &inner);
            }
        }
    }
}

/// A variable reference: `var.x`, `aws_instance.a[0].id`.
#[derive(Clone, Debug)]
pub struct Reference {
    pub root: String,
    pub steps: Vec<RefStep>,
    pub range: Range,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefStep {
    Attr(String),
    Key(String),
    Index(i64),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.root)?;
        for s in &self.steps {
            match s {
                RefStep::Attr(a) => write!(f, ".{a}")?,
                RefStep::Key(k) => write!(f, "[{k:?}]")?,
                RefStep::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// An attribute in a body.
#[derive(Clone, Debug)]
pub struct Attribute {
    pub name: String,
    pub expr: Expr,
    pub range: Range,
    pub name_range: Range,
}

/// A block in a body.
#[derive(Clone, Debug)]
pub struct Block {
    pub kind: String,
    pub labels: Vec<String>,
    pub body: Body,
    pub range: Range,
    pub type_range: Range,
    pub label_ranges: Vec<Range>,
}

/// A body: attributes and blocks in source order. JSON bodies arrive here
/// already decoded against the schema the caller gave (see [`crate::json`]).
#[derive(Clone, Debug, Default)]
pub struct Body {
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<Block>,
    pub range: Range,
    /// JSON object properties not yet known to be attributes or blocks.
    pub json: Option<Arc<crate::json::JsonBody>>,
}

impl Body {
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn blocks_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.blocks.iter().filter(move |b| b.kind == kind)
    }
}

/// Parses a native-syntax file.
pub fn parse_body(name: &str, text: &str) -> Result<Body, Diagnostics> {
    let idx = LineIndex::new(name, text);
    let body = hcl_edit::parser::parse_body(text).map_err(|e| parse_error(&idx, &e))?;
    let mut conv = Conv { idx: &idx };
    let b = conv.body(&body);
    Ok(b)
}

/// Parses one expression (console input, `-var` values).
pub fn parse_expr(name: &str, text: &str) -> Result<Expr, Diagnostics> {
    let idx = LineIndex::new(name, text);
    if text.trim().is_empty() {
        return Err(Diagnostics::error(
            "Missing expression",
            "Expected the start of an expression, but found the end of the file.",
            Some(idx.range(text.len()..text.len())),
        ));
    }
    let e = hcl_edit::parser::parse_expr(text).map_err(|e| parse_error(&idx, &e))?;
    Ok(Conv { idx: &idx }.expr(&e))
}

/// Parses a template (string contents without quotes: `templatefile`, JSON strings).
pub fn parse_template(name: &str, text: &str) -> Result<Expr, Diagnostics> {
    let idx = LineIndex::new(name, text);
    let t = hcl_edit::parser::parse_template(text).map_err(|e| parse_error(&idx, &e))?;
    let r = idx.range(0..text.len());
    Ok(Conv { idx: &idx }.template(&t, r))
}

fn parse_error(idx: &LineIndex, e: &hcl_edit::parser::Error) -> Diagnostics {
    let loc = e.location();
    let line = loc.line();
    let col = loc.column();
    let byte = idx.starts_byte(line)
        + e.line()
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(0, |(b, _)| b);
    let pos = Pos {
        line,
        column: col,
        byte,
    };
    let range = Range {
        filename: idx.name.clone(),
        start: pos,
        end: Pos {
            line,
            column: col + 1,
            byte: byte + 1,
        },
    };
    let msg = e.message();
    if let Some(open) = unclosed_brace(idx.text()) {
        // Like terraform: point at the brace that is never closed.
        return Diagnostics::error(
            "Unclosed configuration block",
            "There is no closing brace for this block before the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.",
            Some(idx.range(open..open + 1)),
        );
    }
    let (summary, detail) = if msg.contains("expected") && msg.contains("`}`") {
        (
            "Unclosed configuration block",
            "There is no closing brace for this block before the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.".to_string(),
        )
    } else if msg.contains("expression") || msg.contains("template") {
        (
            "Invalid expression",
            "Expected the start of an expression, but found an invalid expression token."
                .to_string(),
        )
    } else {
        (
            "Argument or block definition required",
            format!("An argument or block definition is required here ({msg})."),
        )
    };
    Diagnostics::error(summary, detail, Some(range))
}

/// The byte of the first `{` that is never closed (outside strings, comments, heredocs).
fn unclosed_brace(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut stack: Vec<usize> = Vec::new();
    let mut i = 0;
    let mut in_str = false;
    let mut interp = 0usize;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'$' | b'%' if b.get(i + 1) == Some(&b'{') => {
                    interp += 1;
                    stack.push(i + 1);
                    in_str = false;
                    i += 1;
                }
                b'"' if interp == 0 => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'<' if b.get(i + 1) == Some(&b'<') => {
                // Heredoc: skip to the line holding only the marker.
                let rest = &text[i + 2..];
                let rest = rest.strip_prefix('-').unwrap_or(rest);
                let id: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !id.is_empty() {
                    let mut pos = text[i..].find('\n').map_or(b.len(), |n| i + n + 1);
                    while pos < b.len() {
                        let end = text[pos..].find('\n').map_or(b.len(), |n| pos + n);
                        if text[pos..end].trim() == id {
                            break;
                        }
                        pos = end + 1;
                    }
                    i = pos;
                }
            }
            b'{' => stack.push(i),
            b'}' => {
                stack.pop();
                if interp > 0 {
                    interp -= 1;
                    in_str = true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    stack.first().copied().filter(|_| !stack.is_empty())
}

impl LineIndex {
    fn starts_byte(&self, line: usize) -> usize {
        self.starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0)
    }
}

struct Conv<'a> {
    idx: &'a LineIndex,
}

impl Conv<'_> {
    fn body(&mut self, b: &hs::Body) -> Body {
        let mut out = Body {
            range: self.idx.span(b),
            ..Body::default()
        };
        for s in b {
            match s {
                hs::Structure::Attribute(a) => out.attributes.push(Attribute {
                    name: a.key.value().to_string(),
                    expr: self.expr(&a.value),
                    range: self.idx.span(a),
                    name_range: self.idx.span(&a.key),
                }),
                hs::Structure::Block(bl) => out.blocks.push(Block {
                    kind: bl.ident.value().to_string(),
                    labels: bl.labels.iter().map(|l| l.as_str().to_string()).collect(),
                    label_ranges: bl.labels.iter().map(|l| self.idx.span(l)).collect(),
                    body: self.body(&bl.body),
                    range: self.idx.span(bl),
                    type_range: self.idx.span(&bl.ident),
                }),
            }
        }
        out
    }

    fn expr(&mut self, e: &Expression) -> Expr {
        let r = self.idx.span(e);
        match e {
            Expression::Null(_) => Expr::Literal(Value::dyn_null(), r),
            Expression::Bool(b) => Expr::Literal(Value::bool(*b.value()), r),
            Expression::Number(n) => {
                let raw = e
                    .span()
                    .and_then(|s| self.idx.text().get(s))
                    .map_or_else(|| n.value().to_string(), str::to_string);
                let num = Number::parse(raw.trim()).unwrap_or_else(|_| {
                    n.value()
                        .as_f64()
                        .map_or_else(Number::zero, Number::from_f64)
                });
                Expr::Literal(Value::number(num), r)
            }
            Expression::String(s) => Expr::Literal(Value::string(nfc(s.value())), r),
            Expression::Array(a) => Expr::Tuple(a.iter().map(|x| self.expr(x)).collect(), r),
            Expression::Object(o) => {
                let mut items = Vec::new();
                for (k, v) in o {
                    let key = match k {
                        he::ObjectKey::Ident(id) => {
                            ObjKey::Name(id.value().to_string(), self.idx.span(id))
                        }
                        he::ObjectKey::Expression(x) => ObjKey::Expr(self.expr(x)),
                    };
                    items.push((key, self.expr(v.expr())));
                }
                Expr::Object(items, r)
            }
            Expression::StringTemplate(t) => self.template(t, r),
            Expression::HeredocTemplate(h) => self.template(&h.template, r),
            Expression::Parenthesis(p) => Expr::Paren(Box::new(self.expr(p.inner())), r),
            Expression::Variable(v) => Expr::Var(v.value().to_string(), r),
            Expression::Conditional(c) => Expr::Cond(
                Box::new(self.expr(&c.cond_expr)),
                Box::new(self.expr(&c.true_expr)),
                Box::new(self.expr(&c.false_expr)),
                r,
            ),
            Expression::FuncCall(f) => {
                let mut name = String::new();
                for ns in &f.name.namespace {
                    name.push_str(ns.value().as_str());
                    name.push_str("::");
                }
                name.push_str(f.name.name.value().as_str());
                Expr::Call {
                    name,
                    args: f.args.iter().map(|a| self.expr(a)).collect(),
                    expand: f.args.expand_final(),
                    name_range: self.idx.span(&f.name.name),
                    range: r,
                }
            }
            Expression::Traversal(t) => {
                let base = self.expr(&t.expr);
                self.traversal(base, &t.operators, r)
            }
            Expression::UnaryOp(u) => {
                let op = match u.operator.value() {
                    UnaryOperator::Neg => UnOp::Neg,
                    UnaryOperator::Not => UnOp::Not,
                };
                Expr::Unary(op, Box::new(self.expr(&u.expr)), r)
            }
            Expression::BinaryOp(b) => {
                let op = match b.operator.value() {
                    BinaryOperator::Eq => BinOp::Eq,
                    BinaryOperator::NotEq => BinOp::NotEq,
                    BinaryOperator::LessEq => BinOp::LessEq,
                    BinaryOperator::GreaterEq => BinOp::GreaterEq,
                    BinaryOperator::Less => BinOp::Less,
                    BinaryOperator::Greater => BinOp::Greater,
                    BinaryOperator::Plus => BinOp::Add,
                    BinaryOperator::Minus => BinOp::Sub,
                    BinaryOperator::Mul => BinOp::Mul,
                    BinaryOperator::Div => BinOp::Div,
                    BinaryOperator::Mod => BinOp::Mod,
                    BinaryOperator::And => BinOp::And,
                    BinaryOperator::Or => BinOp::Or,
                };
                Expr::Binary(
                    op,
                    Box::new(self.expr(&b.lhs_expr)),
                    Box::new(self.expr(&b.rhs_expr)),
                    r,
                )
            }
            Expression::ForExpr(f) => Expr::For(Box::new(ForExpr {
                key_var: f.intro.key_var.as_ref().map(|k| k.value().to_string()),
                value_var: f.intro.value_var.value().to_string(),
                coll: self.expr(&f.intro.collection_expr),
                key: f.key_expr.as_ref().map(|k| self.expr(k)),
                value: self.expr(&f.value_expr),
                cond: f.cond.as_ref().map(|c| self.expr(&c.expr)),
                group: f.grouping,
                range: r,
            })),
        }
    }

    fn traversal(
        &mut self,
        base: Expr,
        ops: &[hcl_edit::Decorated<TraversalOperator>],
        r: Range,
    ) -> Expr {
        let mut cur = base;
        let mut steps: Vec<Step> = Vec::new();
        let mut i = 0;
        while i < ops.len() {
            let op = ops[i].value();
            let or = self.idx.span(&ops[i]);
            match op {
                TraversalOperator::GetAttr(id) => {
                    steps.push(Step::Attr(id.value().to_string(), or));
                }
                TraversalOperator::Index(x) => steps.push(Step::Index(self.expr(x), or)),
                TraversalOperator::LegacyIndex(n) => steps.push(Step::Index(
                    Expr::Literal(Value::number(Number::from_u64(*n.value())), or.clone()),
                    or,
                )),
                TraversalOperator::AttrSplat(_) | TraversalOperator::FullSplat(_) => {
                    let full = matches!(op, TraversalOperator::FullSplat(_));
                    if !steps.is_empty() {
                        cur = Expr::Traverse(Box::new(cur), std::mem::take(&mut steps), r.clone());
                    }
                    // The operators that apply to each element.
                    let mut j = i + 1;
                    while j < ops.len() {
                        match ops[j].value() {
                            TraversalOperator::GetAttr(_) => j += 1,
                            TraversalOperator::Index(_) | TraversalOperator::LegacyIndex(_)
                                if full =>
                            {
                                j += 1;
                            }
                            TraversalOperator::AttrSplat(_) | TraversalOperator::FullSplat(_)
                                if full =>
                            {
                                j += 1;
                            }
                            _ => break,
                        }
                    }
                    let item = Expr::SplatItem(or.clone());
                    let each = self.traversal(item, &ops[i + 1..j], r.clone());
                    cur = Expr::Splat(Box::new(cur), Box::new(each), r.clone());
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
        if steps.is_empty() {
            cur
        } else {
            Expr::Traverse(Box::new(cur), steps, r)
        }
    }

    fn template(&mut self, t: &ht::Template, r: Range) -> Expr {
        let parts = self.tparts(t);
        if let [TPart::Interp(e)] = parts.as_slice() {
            return Expr::Wrap(Box::new(e.clone()), r);
        }
        if parts.iter().all(|p| matches!(p, TPart::Lit(_))) {
            let s: String = parts
                .iter()
                .map(|p| match p {
                    TPart::Lit(s) => s.as_str(),
                    _ => "",
                })
                .collect();
            return Expr::Literal(Value::string(s), r);
        }
        Expr::Template(parts, r)
    }

    /// Converts elements and applies strip markers to the neighbouring literals.
    fn tparts(&mut self, t: &ht::Template) -> Vec<TPart> {
        // (part, strip-before, strip-after) per element.
        let mut raw: Vec<(TPart, bool, bool)> = Vec::new();
        for el in t {
            match el {
                ht::Element::Literal(s) => raw.push((TPart::Lit(nfc(s.value())), false, false)),
                ht::Element::Interpolation(i) => raw.push((
                    TPart::Interp(self.expr(&i.expr)),
                    i.strip.strip_start(),
                    i.strip.strip_end(),
                )),
                ht::Element::Directive(d) => match &**d {
                    ht::Directive::If(ifd) => {
                        let mut then = self.tparts(&ifd.if_expr.template);
                        let else_strip = ifd.else_expr.as_ref().map(|e| e.strip);
                        // `%{ if c ~}` strips the start of the then-branch, `%{~ else }`
                        // its end; likewise for the else-branch and `endif`.
                        if ifd.if_expr.strip.strip_end() {
                            strip_first(&mut then);
                        }
                        let mut els = Vec::new();
                        if let Some(e) = &ifd.else_expr {
                            if e.strip.strip_start() {
                                strip_last(&mut then);
                            }
                            els = self.tparts(&e.template);
                            if e.strip.strip_end() {
                                strip_first(&mut els);
                            }
                            if ifd.endif_expr.strip.strip_start() {
                                strip_last(&mut els);
                            }
                        } else if ifd.endif_expr.strip.strip_start() {
                            strip_last(&mut then);
                        }
                        let _ = else_strip;
                        raw.push((
                            TPart::If(self.expr(&ifd.if_expr.cond_expr), then, els),
                            ifd.if_expr.strip.strip_start(),
                            ifd.endif_expr.strip.strip_end(),
                        ));
                    }
                    ht::Directive::For(fd) => {
                        let mut body = self.tparts(&fd.for_expr.template);
                        if fd.for_expr.strip.strip_end() {
                            strip_first(&mut body);
                        }
                        if fd.endfor_expr.strip.strip_start() {
                            strip_last(&mut body);
                        }
                        raw.push((
                            TPart::For {
                                key: fd.for_expr.key_var.as_ref().map(|k| k.value().to_string()),
                                value: fd.for_expr.value_var.value().to_string(),
                                coll: self.expr(&fd.for_expr.collection_expr),
                                body,
                            },
                            fd.for_expr.strip.strip_start(),
                            fd.endfor_expr.strip.strip_end(),
                        ));
                    }
                },
            }
        }
        let n = raw.len();
        for i in 0..n {
            let (before, after) = (raw[i].1, raw[i].2);
            if before
                && i > 0
                && let TPart::Lit(s) = &mut raw[i - 1].0
            {
                *s = s.trim_end().to_string();
            }
            if after
                && i + 1 < n
                && let TPart::Lit(s) = &mut raw[i + 1].0
            {
                *s = s.trim_start().to_string();
            }
        }
        raw.into_iter().map(|(p, _, _)| p).collect()
    }
}

/// HCL normalizes string literals to Unicode NFC.
fn nfc(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    if s.is_ascii() {
        s.to_string()
    } else {
        s.nfc().collect()
    }
}

fn strip_first(parts: &mut [TPart]) {
    if let Some(TPart::Lit(s)) = parts.first_mut() {
        *s = s.trim_start().to_string();
    }
}

fn strip_last(parts: &mut [TPart]) {
    if let Some(TPart::Lit(s)) = parts.last_mut() {
        *s = s.trim_end().to_string();
    }
}

/// Every attribute of a body as a name → expression map ("just attributes",
/// as `locals` and `.tfvars` files are read). Blocks there are errors.
pub fn just_attributes(body: &Body) -> Result<BTreeMap<String, Attribute>, Diagnostics> {
    let mut out = BTreeMap::new();
    let mut diags = Diagnostics::new();
    if let Some(b) = body.blocks.first() {
        diags.push(Diagnostic::error(
            "Unexpected block",
            format!(
                "Blocks are not allowed here; unexpected block of type {:?}.",
                b.kind
            ),
            Some(b.type_range.clone()),
        ));
    }
    for a in &body.attributes {
        if out.insert(a.name.clone(), a.clone()).is_some() {
            diags.push(Diagnostic::error(
                "Attribute redefined",
                format!("The argument {:?} was already set.", a.name),
                Some(a.name_range.clone()),
            ));
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(out)
    }
}
