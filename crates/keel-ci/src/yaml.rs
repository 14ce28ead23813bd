//! YAML into a position-carrying tree for the template reader. Scalars are
//! resolved with the YAML 1.2 core schema (what GitHub's parser uses: `0755`
//! is 755, `yes` is a string); duplicate keys are kept, since the reader
//! reports them with GitHub's message. Anchors and aliases are expanded within
//! a node budget, or refused (GitHub's parser option `AllowAnchors`).
//! Explicit tags follow GitHub's reader: `!!str` takes any style, `!!bool`,
//! `!!int`, `!!float` and `!!null` only plain scalars that match them, any
//! other tag is refused.

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

/// A YAML syntax problem. `pos` is `None` for the problems GitHub reports
/// for the whole file (its message names the place when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl YamlError {
    /// `file (Line: L, Col: C): message`, or `file: message` (GitHub's forms).
    pub fn render(&self, file: &str) -> String {
        match self.pos {
            Some(p) => format!(
                "{file} (Line: {}, Col: {}): {}",
                p.line, p.col, self.message
            ),
            None => format!("{file}: {}", self.message),
        }
    }
}

/// How [`parse_with`] reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Nested mappings and sequences allowed (GitHub: 50).
    pub max_depth: usize,
    /// Anchors and aliases expanded (true) or refused with GitHub's message.
    pub allow_anchors: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_depth: 100,
            allow_anchors: true,
        }
    }
}

const MAX_NODES: usize = 500_000;

const TAG_STR: &str = "tag:yaml.org,2002:str";
const TAG_BOOL: &str = "tag:yaml.org,2002:bool";
const TAG_INT: &str = "tag:yaml.org,2002:int";
const TAG_FLOAT: &str = "tag:yaml.org,2002:float";
const TAG_NULL: &str = "tag:yaml.org,2002:null";

/// YAML 1.2 core schema resolution of a plain scalar.
pub fn resolve_core(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    match resolve_number(s) {
        Some(Ok(n)) => Scalar::Number(n),
        // Out of GitHub's range: the reader reports it.
        Some(Err(())) | None => Scalar::String(s.to_string()),
    }
}

/// A core-schema number (`None`: not one; `Err`: one GitHub's reader
/// refuses, a hex or octal value beyond 32 bits).
fn resolve_number(s: &str) -> Option<Result<f64, ()>> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(Ok(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(Ok(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(Ok(f64::NAN)),
        _ => {}
    }
    for (prefix, base, ok) in [
        ("0x", 16, u8::is_ascii_hexdigit as fn(&u8) -> bool),
        ("0o", 8, |b: &u8| (b'0'..=b'7').contains(b)),
    ] {
        if let Some(digits) = s.strip_prefix(prefix)
            && !digits.is_empty()
            && digits.bytes().all(|b| ok(&b))
        {
            // GitHub reads these as a 32-bit integer (two's complement).
            return Some(
                u32::from_str_radix(digits, base)
                    .map(|v| f64::from(v.cast_signed()))
                    .map_err(|_| ()),
            );
        }
    }
    if is_core_float(s) {
        return s.parse::<f64>().ok().map(Ok);
    }
    None
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

struct Builder<'s> {
    src: &'s str,
    /// `src`'s length in characters (parser indices count characters).
    src_chars: usize,
    /// `src` split in lines, for positions GitHub reports differently.
    lines: Vec<&'s str>,
    anchors: HashMap<usize, YNode>,
    nodes: usize,
    opts: Options,
}

/// GitHub's message for a scalar its reader refuses, naming where it is.
fn invalid_value(text: &str, pos: Pos, tag: &str) -> YamlError {
    YamlError {
        pos: None,
        message: format!(
            "The value '{text}' on line {} and column {} is invalid for the type '{tag}'",
            pos.line, pos.col
        ),
    }
}

/// A scalar read as GitHub's reader reads it: explicit tags first, then the
/// core schema for plain scalars; anything quoted or block is a string.
fn read_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&str>,
    pos: Pos,
) -> Result<Scalar, YamlError> {
    let Some(tag) = tag else {
        if style != ScalarStyle::Plain {
            return Ok(Scalar::String(text.to_string()));
        }
        return match resolve_number(text) {
            Some(Err(())) => Err(invalid_value(text, pos, TAG_INT)),
            _ => Ok(resolve_core(text)),
        };
    };
    if tag == TAG_STR {
        return Ok(Scalar::String(text.to_string()));
    }
    if style != ScalarStyle::Plain {
        let style = match style {
            ScalarStyle::SingleQuoted => "SingleQuoted",
            ScalarStyle::DoubleQuoted => "DoubleQuoted",
            ScalarStyle::Literal => "Literal",
            _ => "Folded",
        };
        return Err(YamlError {
            pos: None,
            message: format!(
                "The scalar style '{style}' on line {} and column {} is not valid with the tag '{tag}'",
                pos.line, pos.col
            ),
        });
    }
    let int_like = |t: &str| {
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            || t.starts_with("0x")
            || t.starts_with("0o")
    };
    let scalar = match (tag, resolve_core(text)) {
        (TAG_BOOL, b @ Scalar::Bool(_)) | (TAG_NULL, b @ Scalar::Null) => b,
        (TAG_FLOAT, n @ Scalar::Number(_))
            if !text.starts_with("0x") && !text.starts_with("0o") =>
        {
            n
        }
        (TAG_INT, n @ Scalar::Number(_)) if int_like(text) => n,
        (TAG_BOOL | TAG_NULL | TAG_FLOAT | TAG_INT, _) => {
            return Err(invalid_value(text, pos, tag));
        }
        _ => {
            return Err(YamlError {
                pos: None,
                message: format!("Unexpected tag '{tag}'"),
            });
        }
    };
    Ok(scalar)
}

fn anchor_refused(name: &str) -> YamlError {
    YamlError {
        pos: None,
        message: format!("Anchors are not currently supported. Remove the anchor '{name}'"),
    }
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
            pos: Some(Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            }),
            message: e.info().clone(),
        }),
        None => Err(YamlError {
            pos: Some(Pos { line: 1, col: 1 }),
            message: "unexpected end of stream".into(),
        }),
    }
}

impl Builder<'_> {
    fn count(&mut self, n: usize, span: &Span) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                pos: Some(pos_of(span)),
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
        // `depth` counts the enclosing collections; GitHub counts this one
        // too when it is a collection.
        let is_collection = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
        if is_collection && depth >= self.opts.max_depth {
            return Err(YamlError {
                pos: None,
                message: "Maximum object depth exceeded".into(),
            });
        }
        if !self.opts.allow_anchors
            && let Event::Scalar(_, _, a, _)
            | Event::SequenceStart(_, a, _)
            | Event::MappingStart(_, a, _) = &ev
            && *a != 0
        {
            let name = anchor_name(self.src, span);
            return Err(anchor_refused(&name));
        }
        match ev {
            Event::Alias(id) => {
                let n = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos: Some(pos),
                    message: "unknown anchor".into(),
                })?;
                if depth + depth_of(&n) > self.opts.max_depth {
                    return Err(YamlError {
                        pos: None,
                        message: "Maximum object depth exceeded".into(),
                    });
                }
                self.count(size(&n), span)?;
                Ok(n)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, span)?;
                let tag = tag
                    .as_deref()
                    .map(|t| format!("{}{}", t.handle(), t.suffix()));
                // GitHub's reader places a tagged scalar at its tag, a
                // block scalar at its `|` or `>`.
                let pos = if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    block_header(&self.lines, pos)
                } else {
                    pos
                };
                let pos = if tag.is_some() {
                    tag_start(&self.lines, pos)
                } else {
                    pos
                };
                let mut text = text;
                // A block scalar that ends the input without a line break
                // has none (clip), as in GitHub's reader.
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                    && span.end.index() >= self.src_chars
                    && !self.src.ends_with('\n')
                    && text.ends_with('\n')
                    && !text.ends_with("\n\n")
                {
                    let mut t = text.into_owned();
                    t.pop();
                    text = t.into();
                }
                let scalar = read_scalar(&text, style, tag.as_deref(), pos)?;
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
                pos: Some(pos),
                message: "unexpected YAML event".into(),
            }),
        }
    }
}

/// The `|` or `>` (with its chomping and indentation indicators) of the
/// block scalar whose content starts at `pos`: on the nearest non-blank
/// line above, last on it but for a comment.
fn block_header(lines: &[&str], pos: Pos) -> Pos {
    let above = &lines[..pos.line.saturating_sub(1).min(lines.len())];
    let Some((i, line)) = above
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| !l.trim().is_empty())
    else {
        return pos;
    };
    let chars: Vec<char> = line.chars().collect();
    for (j, &c) in chars.iter().enumerate().rev() {
        if (c != '|' && c != '>') || (j > 0 && !chars[j - 1].is_whitespace()) {
            continue;
        }
        let rest: String = chars[j + 1..].iter().collect();
        let rest = rest.trim_start_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
        if rest.trim().is_empty()
            || (rest.starts_with([' ', '\t']) && rest.trim_start().starts_with('#'))
        {
            return Pos {
                line: i + 1,
                col: j + 1,
            };
        }
    }
    pos
}

/// Where the tag written before the value at `pos` starts (`!!int 3`).
fn tag_start(lines: &[&str], pos: Pos) -> Pos {
    let Some(line) = lines.get(pos.line.saturating_sub(1)) else {
        return pos;
    };
    let before: Vec<char> = line.chars().take(pos.col.saturating_sub(1)).collect();
    let mut i = before.len();
    while i > 0 && before[i - 1].is_whitespace() {
        i -= 1;
    }
    let end = i;
    while i > 0 && !before[i - 1].is_whitespace() {
        i -= 1;
    }
    if i < end && before[i] == '!' {
        Pos {
            line: pos.line,
            col: i + 1,
        }
    } else {
        pos
    }
}

/// Nested collections in `n` (itself included).
fn depth_of(n: &YNode) -> usize {
    match &n.kind {
        YKind::Scalar(_) => 0,
        YKind::Seq(s) => 1 + s.iter().map(depth_of).max().unwrap_or(0),
        YKind::Map(m) => {
            1 + m
                .iter()
                .map(|(k, v)| depth_of(k).max(depth_of(v)))
                .max()
                .unwrap_or(0)
        }
    }
}

/// The name of the anchor written at `span` (`&name`).
fn anchor_name(src: &str, span: &Span) -> String {
    let line = src
        .lines()
        .nth(span.start.line().saturating_sub(1))
        .unwrap_or("");
    let before: String = line.chars().take(span.start.col()).collect();
    let at = line.chars().skip(span.start.col()).collect::<String>();
    // The span may start at the anchor or just after it.
    let text = if at.starts_with('&') {
        at
    } else {
        before
            .rsplit_once('&')
            .map(|(_, a)| format!("&{a}"))
            .unwrap_or_default()
    };
    text.trim_start_matches('&')
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}'))
        .collect()
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
    parse_with(src, Options::default())
}

/// [`parse`] with GitHub's reader options. A comment right after a flow
/// collection's closing bracket (`[a]# note`) is read as a comment, as
/// GitHub's reader does, though YAML wants a space before it.
pub fn parse_with(src: &str, opts: Options) -> Result<Option<YNode>, YamlError> {
    // Each retry fixes one place (and reparses: a bound keeps a file full
    // of them from costing quadratic time; past it the error stands).
    const MAX_FIXES: usize = 64;
    let mut text = std::borrow::Cow::Borrowed(src);
    for _ in 0..=src.matches('#').count().min(MAX_FIXES) {
        match parse_once(&text, opts) {
            Err(e) if e.message == "comments must be separated from other tokens by whitespace" => {
                let Some(at) = e.pos.and_then(|p| offset_of(&text, p)) else {
                    return Err(e);
                };
                let Some(hash) = text[at..].find('#').map(|i| at + i) else {
                    return Err(e);
                };
                if !text[..hash].ends_with([']', '}']) {
                    return Err(e);
                }
                let mut fixed = text.into_owned();
                fixed.insert(hash, ' ');
                text = std::borrow::Cow::Owned(fixed);
            }
            other => return other,
        }
    }
    parse_once(&text, opts)
}

/// The byte offset of a 1-based line and column.
fn offset_of(src: &str, p: Pos) -> Option<usize> {
    let mut off = 0;
    for (i, line) in src.split_inclusive('\n').enumerate() {
        if i + 1 == p.line {
            let col = line
                .char_indices()
                .nth(p.col.saturating_sub(1))
                .map_or(line.len(), |(b, _)| b);
            return Some(off + col);
        }
        off += line.len();
    }
    None
}

fn parse_once(src: &str, opts: Options) -> Result<Option<YNode>, YamlError> {
    let mut parser = Parser::new_from_str(src);
    let mut b = Builder {
        src,
        src_chars: src.chars().count(),
        lines: src.lines().collect(),
        anchors: HashMap::new(),
        nodes: 0,
        opts,
    };
    let mut doc = None;
    loop {
        let (ev, sp) = next(&mut parser)?;
        match ev {
            Event::StreamEnd => break,
            ev if ev.is_node() => {
                if doc.is_some() {
                    return Err(YamlError {
                        pos: Some(pos_of(&sp)),
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
    fn tags_and_32_bit_integers_as_githubs_reader() {
        let one = |src: &str| match parse_with(src, Options::default()) {
            Ok(Some(YNode {
                kind: YKind::Map(m),
                ..
            })) => Ok(m[0].1.kind.clone()),
            Ok(_) => panic!("{src}"),
            Err(e) => Err(e.render("f")),
        };
        assert_eq!(
            one("a: 0xFFFFFFFF"),
            Ok(YKind::Scalar(Scalar::Number(-1.0)))
        );
        assert_eq!(
            one("a: 0x100000000"),
            Err("f: The value '0x100000000' on line 1 and column 4 is invalid for the type 'tag:yaml.org,2002:int'".into())
        );
        assert_eq!(
            one("a: !!str 0"),
            Ok(YKind::Scalar(Scalar::String("0".into())))
        );
        assert_eq!(
            one("a: !<tag:yaml.org,2002:str> true"),
            Ok(YKind::Scalar(Scalar::String("true".into())))
        );
        assert_eq!(one("a: !!float 5"), Ok(YKind::Scalar(Scalar::Number(5.0))));
        assert_eq!(
            one("a: !!int 1.5"),
            Err("f: The value '1.5' on line 1 and column 4 is invalid for the type 'tag:yaml.org,2002:int'".into())
        );
        assert_eq!(
            one("a: !!bool 'true'"),
            Err("f: The scalar style 'SingleQuoted' on line 1 and column 4 is not valid with the tag 'tag:yaml.org,2002:bool'".into())
        );
        assert_eq!(one("a: !Ref x"), Err("f: Unexpected tag '!Ref'".into()));
        // A comment right after a flow sequence, as GitHub's reader takes it.
        assert_eq!(
            one("a: [b]# c"),
            Ok(YKind::Seq(vec![YNode {
                kind: YKind::Scalar(Scalar::String("b".into())),
                pos: Pos { line: 1, col: 5 },
                multiline: false,
            }]))
        );
    }

    #[test]
    fn depth_and_anchors() {
        let deep = "a:\n  b:\n    c: [1]\n";
        let opts = |max_depth, allow_anchors| Options {
            max_depth,
            allow_anchors,
        };
        assert!(parse_with(deep, opts(4, true)).is_ok());
        assert_eq!(
            parse_with(deep, opts(3, true)).unwrap_err().render("f"),
            "f: Maximum object depth exceeded"
        );
        let alias = "a: &x [1]\nb: *x\n";
        assert!(parse_with(alias, opts(50, true)).is_ok());
        assert_eq!(
            parse_with(alias, opts(50, false)).unwrap_err().render("f"),
            "f: Anchors are not currently supported. Remove the anchor 'x'"
        );
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
