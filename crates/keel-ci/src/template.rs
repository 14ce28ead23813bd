//! GitHub's template reader: validates a YAML tree against the workflow
//! [`schema`](crate::schema) and turns `${{ }}` into expression tokens, with
//! GitHub's error messages (`Unexpected value 'x'`, `Required property is
//! missing: y`, `There's not enough info to determine what you meant…`).

use std::collections::HashSet;

use crate::expr::{self, FuncSig};
use crate::schema::{Body, Def, Schema};
use crate::yaml::{Pos, Scalar, YKind, YNode};

/// A template token: a YAML value whose strings may be expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum TKind {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Seq(Vec<Token>),
    Map(Vec<(Token, Token)>),
    /// `${{ expr }}` (several pieces become one `format(...)` call).
    Expr(String),
    /// `${{ insert }}` as a mapping key.
    Insert,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TKind,
    pub pos: Pos,
    /// For expressions: the text as written (`echo ${{ x }}`), for display.
    pub raw: Option<String>,
}

impl Token {
    pub fn new(kind: TKind, pos: Pos) -> Token {
        Token {
            kind,
            pos,
            raw: None,
        }
    }
    /// The value as the user wrote it.
    pub fn source(&self) -> String {
        self.raw.clone().unwrap_or_else(|| self.display())
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            TKind::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&[(Token, Token)]> {
        match &self.kind {
            TKind::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&[Token]> {
        match &self.kind {
            TKind::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&Token> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
    pub fn is_expr(&self) -> bool {
        matches!(self.kind, TKind::Expr(_) | TKind::Insert)
    }
    /// The scalar as GitHub prints it in messages.
    pub fn display(&self) -> String {
        match &self.kind {
            TKind::Null => String::new(),
            TKind::Bool(b) => b.to_string(),
            // GitHub's reader prints numbers the .NET way (`1.5E+18`).
            TKind::Number(n) => crate::expr::value::dotnet_g15(*n),
            TKind::String(s) => s.clone(),
            TKind::Expr(e) => format!("${{{{ {e} }}}}"),
            TKind::Insert => "${{ insert }}".into(),
            TKind::Seq(_) => "Array".into(),
            TKind::Map(_) => "Object".into(),
        }
    }
}

/// One problem found while reading a file. A `pos` on line 0 marks a
/// message that GitHub prints whole, without a position (limits, YAML
/// reader errors: the message then names the file itself when it should).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub pos: Pos,
    pub message: String,
}

impl Diag {
    /// A message printed as it is (see [`Diag`]).
    pub fn whole(message: impl Into<String>) -> Diag {
        Diag {
            pos: Pos { line: 0, col: 0 },
            message: message.into(),
        }
    }
    /// `file (Line: L, Col: C): message`, or the whole message.
    pub fn render(&self, file: &str) -> String {
        if self.pos.line == 0 {
            self.message.clone()
        } else {
            format!(
                "{file} (Line: {}, Col: {}): {}",
                self.pos.line, self.pos.col, self.message
            )
        }
    }
}

/// Splits `a,b,f(0,MAX)` context lists into names and functions.
pub fn split_context(ctx: &[String]) -> (Vec<&str>, Vec<FuncSig>) {
    let mut names = Vec::new();
    let mut funcs = Vec::new();
    for c in ctx {
        if let Some((name, args)) = c.split_once('(') {
            let args = args.trim_end_matches(')');
            let (min, max) = args.split_once(',').unwrap_or(("0", "0"));
            funcs.push(FuncSig {
                name: name.to_lowercase(),
                min: min.parse().unwrap_or(0),
                max: if max == "MAX" {
                    usize::MAX
                } else {
                    max.parse().unwrap_or(0)
                },
            });
        } else {
            names.push(c.as_str());
        }
    }
    (names, funcs)
}

/// The longest expression GitHub parses (in UTF-16 units).
pub const MAX_EXPRESSION_LENGTH: usize = 21_000;

fn check_length(src: &str) -> Result<(), String> {
    if src.encode_utf16().count() > MAX_EXPRESSION_LENGTH {
        return Err(format!(
            "Exceeded max expression length {MAX_EXPRESSION_LENGTH}"
        ));
    }
    Ok(())
}

/// Checks that `src` parses with the contexts allowed at `ctx`.
pub fn validate_expression(src: &str, ctx: &[String]) -> Result<expr::Expr, String> {
    check_length(src)?;
    let (names, funcs) = split_context(ctx);
    match expr::compile(src, &names, &funcs) {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err("An expression was expected".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The memory GitHub's reader accounts for a token tree, as its
/// `TemplateMemory` does: 24 bytes an object, strings and expressions
/// 26 more plus 2 a UTF-16 unit. `max-result-size` limits this sum.
pub fn result_size(t: &Token) -> usize {
    const MIN_OBJECT: usize = 24;
    const STRING_OVERHEAD: usize = 26;
    let text = |s: &str| MIN_OBJECT + STRING_OVERHEAD + 2 * s.encode_utf16().count();
    match &t.kind {
        TKind::Null | TKind::Bool(_) | TKind::Number(_) | TKind::Insert => MIN_OBJECT,
        TKind::String(s) | TKind::Expr(s) => text(s),
        TKind::Seq(items) => MIN_OBJECT + items.iter().map(result_size).sum::<usize>(),
        TKind::Map(m) => {
            MIN_OBJECT
                + m.iter()
                    .map(|(k, v)| result_size(k) + result_size(v))
                    .sum::<usize>()
        }
    }
}

/// Reads `root` as definition `ty`; problems go to `diags`.
pub fn read(root: &YNode, ty: &str, diags: &mut Vec<Diag>) -> Token {
    let schema = Schema::workflow();
    let def = schema.get(ty);
    let mut r = Reader { schema, diags };
    r.value(root, def, &def.context.clone())
}

struct Reader<'a> {
    schema: &'static Schema,
    diags: &'a mut Vec<Diag>,
}

/// Allowed contexts accumulate from the enclosing definitions.
fn child_context(parent: &[String], def: &Def) -> Vec<String> {
    if def.context.is_empty() {
        return parent.to_vec();
    }
    let mut out = parent.to_vec();
    for c in &def.context {
        if !out.iter().any(|x| x.eq_ignore_ascii_case(c)) {
            out.push(c.clone());
        }
    }
    out
}

impl Reader<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diag {
            pos,
            message: message.into(),
        });
    }

    fn value(&mut self, node: &YNode, def: &'static Def, ctx: &[String]) -> Token {
        let ctx = child_context(ctx, def);
        match &node.kind {
            YKind::Scalar(s) => {
                let t = self.scalar(node, s, &ctx);
                self.validate(t, def, &ctx)
            }
            YKind::Seq(items) => {
                let seqs = self.schema.sequences(def);
                if let Some(Def {
                    body: Body::Sequence(item),
                    ..
                }) = seqs.first()
                {
                    let item = self.schema.get(item);
                    let out = items.iter().map(|i| self.value(i, item, &ctx)).collect();
                    Token::new(TKind::Seq(out), node.pos)
                } else {
                    self.error(node.pos, "A sequence was not expected");
                    Token::new(TKind::Seq(Vec::new()), node.pos)
                }
            }
            YKind::Map(entries) => {
                let maps = self.schema.mappings(def);
                if maps.is_empty() {
                    self.error(node.pos, "A mapping was not expected");
                    return Token::new(TKind::Map(Vec::new()), node.pos);
                }
                let all_loose = maps.len() == 1
                    && matches!(&maps[0].body, Body::Mapping { props, loose: Some(_) } if props.is_empty());
                let out = if all_loose {
                    self.loose_mapping(node, entries, maps[0], &ctx)
                } else {
                    self.known_mapping(node, entries, maps, &ctx)
                };
                Token::new(TKind::Map(out), node.pos)
            }
        }
    }

    fn key_token(&mut self, key: &YNode, ctx: &[String]) -> Token {
        match &key.kind {
            YKind::Scalar(s) => {
                let t = self.scalar(key, s, ctx);
                if t.is_expr() {
                    return t;
                }
                let text = t.display();
                Token::new(TKind::String(text), key.pos)
            }
            _ => Token::new(TKind::String(String::new()), key.pos),
        }
    }

    fn known_mapping(
        &mut self,
        node: &YNode,
        entries: &[(YNode, YNode)],
        mut maps: Vec<&'static Def>,
        ctx: &[String],
    ) -> Vec<(Token, Token)> {
        let loose = match &maps[0].body {
            Body::Mapping { loose, .. } => loose.clone(),
            _ => None,
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut has_expr_key = false;
        let mut out = Vec::new();
        for (k, v) in entries {
            let key = self.key_token(k, ctx);
            if key.is_expr() {
                has_expr_key = true;
                if ctx.is_empty() {
                    self.error(
                        key.pos,
                        "A template expression is not allowed in this context",
                    );
                } else {
                    let any = self.schema.get("any");
                    let value = self.value(v, any, ctx);
                    out.push((key, value));
                }
                continue;
            }
            let name = key.as_str().unwrap_or_default().to_string();
            if self.duplicate(&name, key.pos, &mut seen) {
                continue;
            }
            // Well-known property: narrows the candidate definitions.
            let found = maps.iter().find_map(|m| match &m.body {
                Body::Mapping { props, .. } => props.iter().find(|p| p.name == name).cloned(),
                _ => None,
            });
            if let Some(prop) = found {
                maps.retain(|m| {
                    matches!(&m.body, Body::Mapping { props, .. } if props.iter().any(|p| p.name == name))
                });
                let def = self.schema.get(&prop.ty);
                let value = self.value(v, def, ctx);
                out.push((key, value));
                continue;
            }
            if let Some((kt, vt)) = &loose {
                let kdef = self.schema.get(kt);
                let key = self.validate(key, kdef, ctx);
                let value = self.value(v, self.schema.get(vt), ctx);
                out.push((key, value));
                continue;
            }
            self.error(key.pos, format!("Unexpected value '{name}'"));
        }
        if maps.len() > 1 {
            let mut counts: Vec<(String, usize)> = Vec::new();
            for m in &maps {
                if let Body::Mapping { props, .. } = &m.body {
                    for p in props {
                        match counts.iter_mut().find(|(n, _)| *n == p.name) {
                            Some(c) => c.1 += 1,
                            None => counts.push((p.name.clone(), 1)),
                        }
                    }
                }
            }
            // Background-step keys are behind a feature flag GitHub keeps off.
            let mut names: Vec<String> = counts
                .into_iter()
                .filter(|(n, c)| *c == 1 && !matches!(n.as_str(), "wait" | "wait-all" | "cancel"))
                .map(|(n, _)| n)
                .collect();
            names.sort();
            self.error(
                node.pos,
                format!(
                    "There's not enough info to determine what you meant. Add one of these properties: {}",
                    names.join(", ")
                ),
            );
        } else if !has_expr_key && let Body::Mapping { props, .. } = &maps[0].body {
            for p in props.iter().filter(|p| p.required) {
                if !seen.contains(&p.name.to_uppercase()) {
                    self.error(
                        node.pos,
                        format!("Required property is missing: {}", p.name),
                    );
                }
            }
        }
        out
    }

    fn loose_mapping(
        &mut self,
        _node: &YNode,
        entries: &[(YNode, YNode)],
        def: &'static Def,
        ctx: &[String],
    ) -> Vec<(Token, Token)> {
        let Body::Mapping {
            loose: Some((kt, vt)),
            ..
        } = &def.body
        else {
            return Vec::new();
        };
        let kdef = self.schema.get(kt);
        let vdef = self.schema.get(vt);
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        for (k, v) in entries {
            let key = self.key_token(k, ctx);
            if key.is_expr() {
                if ctx.is_empty() {
                    self.error(
                        key.pos,
                        "A template expression is not allowed in this context",
                    );
                } else {
                    let value = self.value(v, vdef, ctx);
                    out.push((key, value));
                }
                continue;
            }
            let name = key.as_str().unwrap_or_default().to_string();
            if self.duplicate(&name, key.pos, &mut seen) {
                continue;
            }
            let key = self.validate(key, kdef, ctx);
            let value = self.value(v, vdef, ctx);
            out.push((key, value));
        }
        out
    }

    /// Reports a key seen before (ignoring case); GitHub skips its value.
    fn duplicate(&mut self, name: &str, pos: Pos, seen: &mut HashSet<String>) -> bool {
        if name.is_empty() {
            return false;
        }
        let upper = name.to_uppercase();
        if !seen.insert(upper) {
            self.error(pos, format!("'{name}' is already defined"));
            return true;
        }
        false
    }

    fn validate(&mut self, t: Token, def: &'static Def, ctx: &[String]) -> Token {
        if t.is_expr() {
            if ctx.is_empty() {
                self.error(
                    t.pos,
                    "A template expression is not allowed in this context",
                );
            }
            return t;
        }
        let mut scalars = Vec::new();
        self.schema.scalars(def, &mut scalars);
        if scalars.iter().any(|d| matches(d, &t)) {
            return t;
        }
        if !matches!(t.kind, TKind::String(_)) {
            let s = Token::new(TKind::String(t.display()), t.pos);
            if scalars.iter().any(|d| matches(d, &s)) {
                return s;
            }
        }
        self.error(t.pos, format!("Unexpected value '{}'", t.display()));
        t
    }

    /// A YAML scalar as a token, splitting out `${{ }}` expressions.
    #[allow(clippy::many_single_char_names)]
    fn scalar(&mut self, node: &YNode, s: &Scalar, ctx: &[String]) -> Token {
        let raw = match s {
            Scalar::Null => return Token::new(TKind::Null, node.pos),
            Scalar::Bool(b) => return Token::new(TKind::Bool(*b), node.pos),
            Scalar::Number(n) => return Token::new(TKind::Number(*n), node.pos),
            Scalar::String(s) => s,
        };
        let pos = node.pos;
        let string = || Token::new(TKind::String(raw.clone()), pos);
        let Some(mut start) = raw.find("${{") else {
            return string();
        };
        let b = raw.as_bytes();
        let mut segments: Vec<Seg> = Vec::new();
        let mut i = 0;
        let mut failed = false;
        loop {
            if i == start {
                let mut end = None;
                let mut in_string = false;
                let mut j = i + 3;
                while j < b.len() {
                    if b[j] == b'\'' {
                        in_string = !in_string;
                    } else if !in_string && b[j] == b'}' && b[j - 1] == b'}' {
                        end = Some(j);
                        j += 1;
                        break;
                    }
                    j += 1;
                }
                let Some(end) = end else {
                    self.error(
                        pos,
                        "The expression is not closed. An unescaped ${{ sequence was found, but the closing }} sequence was not found.",
                    );
                    return string();
                };
                i = j;
                let inner = &raw[start + 3..end - 1];
                match Self::expression(inner, ctx) {
                    Err(msg) => {
                        self.error(pos, msg);
                        failed = true;
                    }
                    Ok(Seg::Insert) => {
                        if start != 0 || i < raw.len() {
                            self.error(
                                pos,
                                "The directive 'insert' is not allowed in this context. Directives are not supported for expressions that are embedded within a string. Directives are only supported when the entire value is an expression.",
                            );
                            return string();
                        }
                        segments.push(Seg::Insert);
                    }
                    Ok(seg) => segments.push(seg),
                }
                if let Some(p) = raw[i..].find("${{") {
                    start = i + p;
                } else {
                    if i < raw.len() {
                        push_text(&mut segments, &raw[i..]);
                    }
                    break;
                }
            } else {
                push_text(&mut segments, &raw[i..start]);
                i = start;
            }
        }
        if failed {
            return string();
        }
        if let [Seg::Expr(e)] = segments.as_slice() {
            if let Some(lit) = literal_string(e) {
                return Token::new(TKind::String(lit), pos);
            }
            let mut t = Token::new(TKind::Expr(e.clone()), pos);
            t.raw = Some(raw.clone());
            return t;
        }
        if let [Seg::Insert] = segments.as_slice() {
            return Token::new(TKind::Insert, pos);
        }
        let mut fmt = String::new();
        let mut args = String::new();
        let mut n = 0;
        for s in &segments {
            match s {
                Seg::Text(t) => {
                    fmt.push_str(&t.replace('\'', "''").replace('{', "{{").replace('}', "}}"));
                }
                Seg::Expr(e) => {
                    let _ = std::fmt::Write::write_fmt(&mut fmt, format_args!("{{{n}}}"));
                    n += 1;
                    args.push_str(", ");
                    args.push_str(e);
                }
                Seg::Insert => {}
            }
        }
        // The pieces joined into one `format()` call must fit too.
        let joined = format!("format('{fmt}'{args})");
        if let Err(msg) = check_length(&joined) {
            self.error(pos, msg);
            return string();
        }
        let mut t = Token::new(TKind::Expr(joined), pos);
        t.raw = Some(raw.clone());
        t
    }

    fn expression(inner: &str, ctx: &[String]) -> Result<Seg, String> {
        let trimmed = inner.trim();
        if trimmed.is_empty() {
            return Err("An expression was expected".into());
        }
        if let Some(rest) = trimmed.strip_prefix("insert")
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            if rest.trim().is_empty() {
                return Ok(Seg::Insert);
            }
            let n = rest.split_whitespace().count();
            return Err(format!(
                "Exactly 0 parameter(s) were expected following the directive 'insert'. Actual parameter count: {n}"
            ));
        }
        validate_expression(trimmed, ctx)?;
        Ok(Seg::Expr(trimmed.to_string()))
    }
}

enum Seg {
    Text(String),
    Expr(String),
    Insert,
}

fn push_text(segs: &mut Vec<Seg>, t: &str) {
    if let Some(Seg::Text(last)) = segs.last_mut() {
        last.push_str(t);
    } else {
        segs.push(Seg::Text(t.to_string()));
    }
}

/// `'literal'` as an expression is just that string (GitHub's escape for a
/// literal `${{`).
fn literal_string(e: &str) -> Option<String> {
    let mut out = String::new();
    let mut in_string = false;
    for (i, c) in e.chars().enumerate() {
        if c == '\'' {
            in_string = !in_string;
            if in_string && i != 0 {
                out.push(c);
            }
        } else if !in_string {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn matches(d: &Def, t: &Token) -> bool {
    match (&d.body, &t.kind) {
        (Body::Null, TKind::Null)
        | (Body::Boolean, TKind::Bool(_))
        | (Body::Number, TKind::Number(_)) => true,
        (
            Body::String {
                constant,
                non_empty,
            },
            TKind::String(s),
        ) => match constant {
            Some(c) => c == s,
            None => !non_empty || !s.is_empty(),
        },
        _ => false,
    }
}
