//! YAML into a position-carrying tree: every node knows its file, line and
//! column, so that errors found after merging files still point at the source.
//! Anchors, aliases and merge keys (`<<`) are resolved here; the custom tags
//! `!reset` and `!override` are kept on the node for the merge step.

use std::collections::HashMap;
use std::sync::Arc;

use granit_parser::{Event, Parser, ScalarStyle, Span};

/// Where a node starts (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// The merge tags compose understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Reset,
    Override,
}

/// A scalar after YAML 1.2 core-schema resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
    pub tag: Option<Tag>,
}

impl Node {
    pub fn new(kind: Kind, pos: Pos) -> Node {
        Node {
            kind,
            pos,
            tag: None,
        }
    }
    pub fn str(s: impl Into<String>, pos: Pos) -> Node {
        Node::new(Kind::Scalar(Scalar::Str(s.into())), pos)
    }
    pub fn null(pos: Pos) -> Node {
        Node::new(Kind::Scalar(Scalar::Null), pos)
    }
    pub fn map(entries: Vec<Entry>, pos: Pos) -> Node {
        Node::new(Kind::Map(entries), pos)
    }
    pub fn as_map(&self) -> Option<&Vec<Entry>> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_map_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match &mut self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(Scalar::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Scalar(Scalar::Null))
    }
    /// The scalar as text, the way compose reads numbers and booleans where it
    /// wants strings (`published: 8080`).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Scalar(Scalar::Str(s)) => Some(s.clone()),
            Kind::Scalar(Scalar::Int(i)) => Some(i.to_string()),
            Kind::Scalar(Scalar::Float(f)) => Some(f.to_string()),
            Kind::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut()?
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.value)
    }
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let m = self.as_map_mut()?;
        let i = m.iter().position(|e| e.key == key)?;
        Some(m.remove(i).value)
    }
    /// Sets `key` (replacing in place, or appending).
    pub fn set(&mut self, key: &str, value: Node) {
        let pos = value.pos.clone();
        if let Some(m) = self.as_map_mut() {
            if let Some(e) = m.iter_mut().find(|e| e.key == key) {
                e.value = value;
            } else {
                m.push(Entry {
                    key: key.to_string(),
                    key_pos: pos,
                    value,
                });
            }
        }
    }
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(Scalar::Null) => "null",
            Kind::Scalar(Scalar::Bool(_)) => "boolean",
            Kind::Scalar(Scalar::Int(_)) => "integer",
            Kind::Scalar(Scalar::Float(_)) => "number",
            Kind::Scalar(Scalar::Str(_)) => "string",
            Kind::Seq(_) => "array",
            Kind::Map(_) => "object",
        }
    }
}

/// A YAML syntax problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Deepest nesting accepted; deeper input is refused instead of overflowing
/// the stack in the recursive passes that follow.
const MAX_DEPTH: usize = 200;
/// Alias expansion budget (node count), against "billion laughs" documents.
const MAX_NODES: usize = 1_000_000;

fn resolve_plain(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let int = if let Some(h) = digits.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = digits.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = digits.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        // go-yaml (what compose uses) reads a leading 0 as octal: `mode: 0400`.
        i64::from_str_radix(&digits[1..], 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Scalar::Int(if neg { -i } else { i });
    }
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        ".inf" | "+.inf" => return Scalar::Float(f64::INFINITY),
        "-.inf" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let looks_float = s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && (s.contains('.') || s.contains('e') || s.contains('E'));
    if looks_float && let Ok(f) = s.parse::<f64>() {
        return Scalar::Float(f);
    }
    Scalar::Str(s.to_string())
}

struct Builder<'a> {
    file: Arc<str>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    _src: &'a str,
}

impl Builder<'_> {
    fn pos(&self, span: &Span) -> Pos {
        Pos {
            file: self.file.clone(),
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }

    fn err(&self, span: &Span, msg: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: self.pos(span),
            message: msg.into(),
        }
    }

    fn count(&mut self, n: usize, span: &Span) -> Result<(), SyntaxError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(self.err(span, "document too large after alias expansion"));
        }
        Ok(())
    }

    fn next<'i>(
        parser: &mut Parser<'i, granit_parser::StrInput<'i>>,
        file: &Arc<str>,
    ) -> Result<(Event<'i>, Span), SyntaxError> {
        match parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(SyntaxError {
                pos: Pos {
                    file: file.clone(),
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                message: e.info(),
            }),
            None => Err(SyntaxError {
                pos: Pos {
                    file: file.clone(),
                    line: 1,
                    col: 1,
                },
                message: "unexpected end of stream".into(),
            }),
        }
    }

    fn tag_of(tag: Option<&granit_parser::Tag>) -> Option<Tag> {
        let t = tag?;
        match (t.handle(), t.suffix()) {
            ("!", "reset") => Some(Tag::Reset),
            ("!", "override") => Some(Tag::Override),
            _ => None,
        }
    }

    /// Builds the node whose first event is `ev`.
    fn node<'i>(
        &mut self,
        parser: &mut Parser<'i, granit_parser::StrInput<'i>>,
        ev: Event<'i>,
        span: &Span,
        depth: usize,
    ) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.err(span, "nesting too deep"));
        }
        let pos = self.pos(span);
        match ev {
            Event::Alias(id) => {
                let n = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| self.err(span, "unknown anchor"))?;
                let size = node_size(&n);
                self.count(size, span)?;
                Ok(n)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, span)?;
                let t = Self::tag_of(tag.as_deref());
                let explicit_str = tag
                    .as_deref()
                    .is_some_and(|t| t.is_yaml_core_schema_tag("str"));
                let scalar = if style == ScalarStyle::Plain && !explicit_str {
                    resolve_plain(&text)
                } else {
                    Scalar::Str(text.into_owned())
                };
                let mut n = Node::new(Kind::Scalar(scalar), pos);
                n.tag = t;
                if anchor != 0 {
                    self.anchors.insert(anchor, n.clone());
                }
                Ok(n)
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.count(1, span)?;
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = Self::next(parser, &self.file)?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    if !ev.is_node() {
                        continue;
                    }
                    items.push(self.node(parser, ev, &sp, depth + 1)?);
                }
                let mut n = Node::new(Kind::Seq(items), pos);
                n.tag = Self::tag_of(tag.as_deref());
                if anchor != 0 {
                    self.anchors.insert(anchor, n.clone());
                }
                Ok(n)
            }
            Event::MappingStart(_, anchor, tag) => {
                self.count(1, span)?;
                let mut entries: Vec<Entry> = Vec::new();
                // Merge-key entries are applied after explicit keys: explicit keys win
                // whatever their order.
                let mut merged: Vec<Entry> = Vec::new();
                loop {
                    let (kev, ksp) = Self::next(parser, &self.file)?;
                    if matches!(kev, Event::MappingEnd) {
                        break;
                    }
                    if !kev.is_node() {
                        continue;
                    }
                    let key_node = self.node(parser, kev, &ksp, depth + 1)?;
                    let (vev, vsp) = loop {
                        let (e, s) = Self::next(parser, &self.file)?;
                        if e.is_node() {
                            break (e, s);
                        }
                    };
                    let value = self.node(parser, vev, &vsp, depth + 1)?;
                    let key = match &key_node.kind {
                        Kind::Scalar(Scalar::Null) => "null".to_string(),
                        Kind::Scalar(s) => match s {
                            Scalar::Str(s) => s.clone(),
                            _ => key_node.scalar_text().unwrap_or_default(),
                        },
                        _ => return Err(self.err(&ksp, "mapping keys must be scalars")),
                    };
                    if key == "<<" && matches!(key_node.kind, Kind::Scalar(Scalar::Str(_))) {
                        let sources: Vec<&Node> = match &value.kind {
                            Kind::Map(_) => vec![&value],
                            Kind::Seq(items) => items.iter().collect(),
                            Kind::Scalar(_) => {
                                return Err(self.err(&vsp, "merge key value must be a mapping"));
                            }
                        };
                        for src in sources {
                            let Some(m) = src.as_map() else {
                                return Err(self.err(&vsp, "merge key value must be a mapping"));
                            };
                            for e in m {
                                if !merged.iter().any(|x| x.key == e.key) {
                                    merged.push(e.clone());
                                }
                            }
                        }
                        continue;
                    }
                    if entries.iter().any(|e| e.key == key) {
                        return Err(SyntaxError {
                            pos: key_node.pos,
                            message: format!("mapping key {key:?} already defined"),
                        });
                    }
                    entries.push(Entry {
                        key,
                        key_pos: key_node.pos,
                        value,
                    });
                }
                for e in merged {
                    if !entries.iter().any(|x| x.key == e.key) {
                        entries.push(e);
                    }
                }
                let mut n = Node::new(Kind::Map(entries), pos);
                n.tag = Self::tag_of(tag.as_deref());
                if anchor != 0 {
                    self.anchors.insert(anchor, n.clone());
                }
                Ok(n)
            }
            _ => Err(self.err(span, "unexpected YAML event")),
        }
    }
}

fn node_size(n: &Node) -> usize {
    match &n.kind {
        Kind::Scalar(_) => 1,
        Kind::Seq(s) => 1 + s.iter().map(node_size).sum::<usize>(),
        Kind::Map(m) => 1 + m.iter().map(|e| 1 + node_size(&e.value)).sum::<usize>(),
    }
}

/// Parses the first document of `src`; an empty file is an empty mapping.
pub fn parse(src: &str, file: &Arc<str>) -> Result<Node, SyntaxError> {
    let mut parser = Parser::new_from_str(src);
    let mut b = Builder {
        file: file.clone(),
        anchors: HashMap::new(),
        nodes: 0,
        _src: src,
    };
    let start = Pos {
        file: file.clone(),
        line: 1,
        col: 1,
    };
    let mut doc: Option<Node> = None;
    loop {
        let (ev, sp) = Builder::next(&mut parser, file)?;
        match ev {
            Event::StreamEnd => break,
            Event::StreamStart | Event::DocumentStart(..) | Event::DocumentEnd => {}
            ev if ev.is_node() => {
                if doc.is_some() {
                    return Err(b.err(&sp, "multiple YAML documents are not supported"));
                }
                doc = Some(b.node(&mut parser, ev, &sp, 0)?);
            }
            _ => {}
        }
    }
    Ok(doc.unwrap_or_else(|| Node::map(Vec::new(), start)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn p(s: &str) -> Node {
        parse(s, &Arc::from("t.yaml")).unwrap()
    }

    #[test]
    fn positions_and_merge_keys() {
        let n = p("x: &b\n  a: 1\n  b: two\ny:\n  <<: *b\n  b: 3\n");
        let y = n.get("y").unwrap();
        assert_eq!(y.get("a").unwrap().kind, Kind::Scalar(Scalar::Int(1)));
        assert_eq!(y.get("b").unwrap().kind, Kind::Scalar(Scalar::Int(3)));
        assert_eq!(y.get("b").unwrap().pos.line, 6);
        assert_eq!(y.get("b").unwrap().pos.col, 6);
    }

    #[test]
    fn tags_kept() {
        let n = p("a: !reset []\nb: !override {x: 1}\nc: !!str 12\n");
        assert_eq!(n.get("a").unwrap().tag, Some(Tag::Reset));
        assert_eq!(n.get("b").unwrap().tag, Some(Tag::Override));
        assert_eq!(n.get("c").unwrap().as_str(), Some("12"));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("a: [1, 2\n", &Arc::from("t.yaml")).unwrap_err();
        assert_eq!(e.pos.file.as_ref(), "t.yaml");
        let e = parse("a: 1\na: 2\n", &Arc::from("t.yaml")).unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 1));
    }

    #[test]
    fn alias_bomb_refused() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            let _ = writeln!(
                s,
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]"
            );
        }
        assert!(parse(&s, &Arc::from("t.yaml")).is_err());
    }
}
