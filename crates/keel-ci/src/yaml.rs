//! YAML into a position-carrying tree for the template reader. Scalars are
//! resolved with the YAML 1.2 core schema (what GitHub's parser uses: `0755`
//! is 755, `yes` is a string); duplicate keys are kept, since the reader
//! reports them with GitHub's message. Anchors and aliases are expanded within
//! a node budget.

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, Span};

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum YKind {
    Scalar(Scalar),
    Seq(Vec<YNode>),
    Map(Vec<(YNode, YNode)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct YNode {
    pub kind: YKind,
    pub pos: Pos,
    /// Scalars spanning several lines (block scalars) keep their source text,
    /// so that expressions inside them are found where the user wrote them.
    pub multiline: bool,
}

/// A YAML syntax problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

const MAX_DEPTH: usize = 100;
const MAX_NODES: usize = 500_000;

/// YAML 1.2 core schema resolution of a plain scalar.
pub fn resolve_core(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Number(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Number(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Number(f64::NAN),
        _ => {}
    }
    if let Some(h) = s.strip_prefix("0x")
        && !h.is_empty()
        && h.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Scalar::Number(radix(h, 16));
    }
    if let Some(o) = s.strip_prefix("0o")
        && !o.is_empty()
        && o.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Scalar::Number(radix(o, 8));
    }
    if is_core_float(s)
        && let Ok(f) = s.parse::<f64>()
    {
        return Scalar::Number(f);
    }
    Scalar::String(s.to_string())
}

fn radix(digits: &str, base: u32) -> f64 {
    digits.chars().fold(0.0, |acc, c| {
        acc * f64::from(base) + f64::from(c.to_digit(base).unwrap_or(0))
    })
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (integers included).
fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - f;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

struct Builder {
    anchors: HashMap<usize, YNode>,
    nodes: usize,
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

fn next<'i>(
    parser: &mut Parser<'i, granit_parser::StrInput<'i>>,
) -> Result<(Event<'i>, Span), YamlError> {
    match parser.next_event() {
        Some(Ok(ev)) => Ok(ev),
        Some(Err(e)) => Err(YamlError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().clone(),
        }),
        None => Err(YamlError {
            pos: Pos { line: 1, col: 1 },
            message: "unexpected end of stream".into(),
        }),
    }
}

impl Builder {
    fn count(&mut self, n: usize, span: &Span) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                pos: pos_of(span),
                message: "document too large after alias expansion".into(),
            });
        }
        Ok(())
    }

    fn node<'i>(
        &mut self,
        parser: &mut Parser<'i, granit_parser::StrInput<'i>>,
        ev: Event<'i>,
        span: &Span,
        depth: usize,
    ) -> Result<YNode, YamlError> {
        let pos = pos_of(span);
        if depth > MAX_DEPTH {
            return Err(YamlError {
                pos,
                message: "Maximum object depth exceeded".into(),
            });
        }
        match ev {
            Event::Alias(id) => {
                let n = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos,
                    message: "unknown anchor".into(),
                })?;
                self.count(size(&n), span)?;
                Ok(n)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, span)?;
                let tag = tag.as_deref().map(|t| t.suffix().to_string());
                let scalar = match tag.as_deref() {
                    Some("str") => Scalar::String(text.to_string()),
                    Some("int" | "float") => match resolve_core(&text) {
                        Scalar::Number(n) => Scalar::Number(n),
                        _ => Scalar::String(text.to_string()),
                    },
                    Some("bool") => match resolve_core(&text) {
                        Scalar::Bool(b) => Scalar::Bool(b),
                        _ => Scalar::String(text.to_string()),
                    },
                    Some("null") => Scalar::Null,
                    _ if style == ScalarStyle::Plain => resolve_core(&text),
                    _ => Scalar::String(text.to_string()),
                };
                let multiline = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                    || span.end.line() > span.start.line();
                // An empty value's position is just past the `:` (GitHub's
                // YAML library); the parser reports the `:` itself.
                let mut pos = pos;
                if span.start.index() == span.end.index() && style == ScalarStyle::Plain {
                    pos.col += 1;
                }
                let n = YNode {
                    kind: YKind::Scalar(scalar),
                    pos,
                    multiline,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, n.clone());
                }
                Ok(n)
            }
            Event::SequenceStart(_, anchor, _) => {
                self.count(1, span)?;
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = next(parser)?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    if !ev.is_node() {
                        continue;
                    }
                    items.push(self.node(parser, ev, &sp, depth + 1)?);
                }
                let n = YNode {
                    kind: YKind::Seq(items),
                    pos,
                    multiline: false,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, n.clone());
                }
                Ok(n)
            }
            Event::MappingStart(_, anchor, _) => {
                self.count(1, span)?;
                let mut entries = Vec::new();
                loop {
                    let (kev, ksp) = next(parser)?;
                    if matches!(kev, Event::MappingEnd) {
                        break;
                    }
                    if !kev.is_node() {
                        continue;
                    }
                    let key = self.node(parser, kev, &ksp, depth + 1)?;
                    let (vev, vsp) = loop {
                        let (e, s) = next(parser)?;
                        if e.is_node() {
                            break (e, s);
                        }
                    };
                    let value = self.node(parser, vev, &vsp, depth + 1)?;
                    entries.push((key, value));
                }
                let n = YNode {
                    kind: YKind::Map(entries),
                    pos,
                    multiline: false,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, n.clone());
                }
                Ok(n)
            }
            _ => Err(YamlError {
                pos,
                message: "unexpected YAML event".into(),
            }),
        }
    }
}

fn size(n: &YNode) -> usize {
    match &n.kind {
        YKind::Scalar(_) => 1,
        YKind::Seq(s) => 1 + s.iter().map(size).sum::<usize>(),
        YKind::Map(m) => 1 + m.iter().map(|(k, v)| size(k) + size(v)).sum::<usize>(),
    }
}

/// Parses the first document of `src` (`None` for an empty file).
pub fn parse(src: &str) -> Result<Option<YNode>, YamlError> {
    let mut parser = Parser::new_from_str(src);
    let mut b = Builder {
        anchors: HashMap::new(),
        nodes: 0,
    };
    let mut doc = None;
    loop {
        let (ev, sp) = next(&mut parser)?;
        match ev {
            Event::StreamEnd => break,
            ev if ev.is_node() => {
                if doc.is_some() {
                    return Err(YamlError {
                        pos: pos_of(&sp),
                        message: "Source contains multiple documents; expected exactly one".into(),
                    });
                }
                doc = Some(b.node(&mut parser, ev, &sp, 0)?);
            }
            _ => {}
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema() {
        assert_eq!(resolve_core("0755"), Scalar::Number(755.0));
        assert_eq!(resolve_core("0o10"), Scalar::Number(8.0));
        assert_eq!(resolve_core("0xFF"), Scalar::Number(255.0));
        assert_eq!(resolve_core("yes"), Scalar::String("yes".into()));
        assert_eq!(resolve_core("-.5"), Scalar::Number(-0.5));
        assert_eq!(resolve_core("1.2e+2"), Scalar::Number(120.0));
        assert_eq!(resolve_core("1e"), Scalar::String("1e".into()));
    }

    #[test]
    fn positions() {
        let n = parse("on: push\njobs:\n  a:\n    runs-on: x\n")
            .unwrap()
            .unwrap();
        let YKind::Map(m) = &n.kind else { panic!() };
        assert_eq!(m[1].0.pos, Pos { line: 2, col: 1 });
        let YKind::Map(jobs) = &m[1].1.kind else {
            panic!()
        };
        assert_eq!(jobs[0].0.pos, Pos { line: 3, col: 3 });
    }
}
