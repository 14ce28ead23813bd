//! The parse tree of Go's `text/template/parse` (node.go): nodes, pipelines,
//! commands, arguments, and number constants with Go's int/float readings.

use std::fmt;
use std::rc::Rc;

use super::lex::It;
use super::unquote_escape;

/// A numeric constant with Go's int/float interpretations.
#[derive(Clone, Debug)]
pub struct Number {
    pub text: String,
    pub is_int: bool,
    pub is_uint: bool,
    pub is_float: bool,
    pub int: i64,
    pub float: f64,
}

#[derive(Clone, Debug)]
pub enum Arg {
    Field {
        pos: usize,
        ident: Vec<String>,
    },
    Variable {
        pos: usize,
        ident: Vec<String>,
    },
    Identifier {
        pos: usize,
        name: String,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        val: bool,
    },
    Number {
        pos: usize,
        num: Number,
    },
    Str {
        pos: usize,
        quoted: String,
        text: String,
    },
    Pipe(Box<Pipe>),
    Chain {
        pos: usize,
        node: Box<Arg>,
        fields: Vec<String>,
    },
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Identifier { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::Str { pos, .. }
            | Arg::Chain { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field { ident, .. } => {
                for i in ident {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Variable { ident, .. } => f.write_str(&ident.join(".")),
            Arg::Identifier { name, .. } => f.write_str(name),
            Arg::Dot { .. } => f.write_str("."),
            Arg::Nil { .. } => f.write_str("nil"),
            Arg::Bool { val, .. } => write!(f, "{val}"),
            Arg::Number { num, .. } => f.write_str(&num.text),
            Arg::Str { quoted, .. } => f.write_str(quoted),
            Arg::Pipe(p) => write!(f, "{p}"),
            Arg::Chain { node, fields, .. } => {
                if let Arg::Pipe(p) = node.as_ref() {
                    write!(f, "({p})")?;
                } else {
                    write!(f, "{node}")?;
                }
                for x in fields {
                    write!(f, ".{x}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if let Arg::Pipe(p) = a {
                write!(f, "({p})")?;
            } else {
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Pipe {
    pub pos: usize,
    pub line: usize,
    pub is_assign: bool,
    pub decl: Vec<String>,
    pub decl_pos: Vec<usize>,
    pub cmds: Vec<Command>,
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(" := ")?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub enum Node {
    Text {
        pos: usize,
        text: String,
    },
    Action {
        pos: usize,
        pipe: Pipe,
    },
    If(Control),
    Range(Control),
    With(Control),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break {
        pos: usize,
    },
    Continue {
        pos: usize,
    },
    Comment,
}

#[derive(Clone, Debug)]
pub struct Control {
    pub pos: usize,
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

impl Node {
    pub fn pos(&self) -> usize {
        match self {
            Node::Text { pos, .. }
            | Node::Action { pos, .. }
            | Node::Template { pos, .. }
            | Node::Break { pos }
            | Node::Continue { pos } => *pos,
            Node::If(c) | Node::Range(c) | Node::With(c) => c.pos,
            Node::Comment => 0,
        }
    }
}

pub(super) fn write_list(f: &mut fmt::Formatter<'_>, l: &[Node]) -> fmt::Result {
    for n in l {
        write!(f, "{n}")?;
    }
    Ok(())
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Text { text, .. } => write!(f, "{}", crate::gofmt::quote(text)),
            Node::Action { pipe, .. } => write!(f, "{{{{{pipe}}}}}"),
            Node::If(c) | Node::Range(c) | Node::With(c) => {
                let name = match self {
                    Node::If(_) => "if",
                    Node::Range(_) => "range",
                    _ => "with",
                };
                write!(f, "{{{{{name} {}}}}}", c.pipe)?;
                write_list(f, &c.list)?;
                if let Some(e) = &c.else_list {
                    f.write_str("{{else}}")?;
                    write_list(f, e)?;
                }
                f.write_str("{{end}}")
            }
            Node::Template { name, pipe, .. } => match pipe {
                None => write!(f, "{{{{template {}}}}}", crate::gofmt::quote(name)),
                Some(p) => write!(f, "{{{{template {} {p}}}}}", crate::gofmt::quote(name)),
            },
            Node::Break { .. } => f.write_str("{{break}}"),
            Node::Continue { .. } => f.write_str("{{continue}}"),
            Node::Comment => Ok(()),
        }
    }
}

/// One parsed template (the body of a file or a `define`).
#[derive(Debug)]
pub struct Tree {
    pub name: String,
    pub parse_name: String,
    pub text: Rc<str>,
    pub root: Vec<Node>,
}

impl Tree {
    /// Go's `ErrorContext`: `name:line:col` (col is the 0-based byte offset in the line).
    pub fn location(&self, pos: usize) -> String {
        let pos = pos.min(self.text.len());
        let text = &self.text[..pos];
        let col = match text.rfind('\n') {
            None => pos,
            Some(i) => pos - (i + 1),
        };
        let line = 1 + text.matches('\n').count();
        format!("{}:{}:{}", self.parse_name, line, col)
    }

    pub fn is_empty(&self) -> bool {
        is_empty_tree(&self.root)
    }
}

pub(super) fn is_empty_tree(l: &[Node]) -> bool {
    l.iter().all(|n| match n {
        Node::Text { text, .. } => text
            .trim_matches(|c: char| c.is_ascii_whitespace())
            .is_empty(),
        Node::Comment => true,
        _ => false,
    })
}

pub(super) fn parse_go_int(text: &str) -> Option<(i64, bool)> {
    // strconv.ParseInt(text, 0, 64): returns (value, fits-in-i64)
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let u = parse_go_uint(body)?;
    if neg {
        if u <= 1u64 << 63 {
            return Some(((u as i64).wrapping_neg(), true));
        }
        return None;
    }
    if i64::try_from(u).is_ok() {
        Some((u as i64, true))
    } else {
        None
    }
}

pub(super) fn parse_go_uint(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r.to_string(), true)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r.to_string(), true)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    // base 0 allows underscores between digits (and after a base prefix)
    if digits.contains('_')
        && (digits.ends_with('_')
            || digits.contains("__")
            || (!prefixed && digits.starts_with('_')))
    {
        return None;
    }
    let d: String = digits.chars().filter(|c| *c != '_').collect();
    if d.is_empty() {
        return None;
    }
    u64::from_str_radix(&d, radix).ok()
}

pub(super) fn new_number(text: &str, typ: It) -> Result<Number, String> {
    let mut n = Number {
        text: text.to_string(),
        is_int: false,
        is_uint: false,
        is_float: false,
        int: 0,
        float: 0.0,
    };
    if typ == It::CharConstant {
        let inner = &text[1..];
        let mut chars = inner.chars().peekable();
        let c = chars.next().ok_or("invalid syntax")?;
        let r = if c == '\\' {
            unquote_escape(&mut chars, '\'')?.1
        } else {
            c as u32
        };
        let tail: String = chars.collect();
        if tail != "'" {
            return Err(format!("malformed character constant: {text}"));
        }
        n.int = i64::from(r);
        n.is_int = true;
        n.is_uint = true;
        n.is_float = true;
        n.float = f64::from(r);
        return Ok(n);
    }
    if typ == It::Complex || text.ends_with('i') {
        return Err(format!(
            "illegal number syntax: {}",
            crate::gofmt::quote(text)
        ));
    }
    let u = if text.starts_with(['+', '-']) {
        None
    } else {
        parse_go_uint(text)
    };
    if u.is_some() {
        n.is_uint = true;
    }
    if let Some((i, _)) = parse_go_int(text) {
        n.is_int = true;
        n.int = i;
        if i == 0 {
            n.is_uint = true;
        }
    }
    if n.is_int {
        n.is_float = true;
        n.float = n.int as f64;
    } else if let Some(u) = u {
        n.is_float = true;
        n.float = u as f64;
    } else if let Some(f) = parse_go_float(text) {
        if !text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Err(format!("integer overflow: {}", crate::gofmt::quote(text)));
        }
        n.is_float = true;
        n.float = f;
        if f.fract() == 0.0 && f.abs() < 9.2e18 {
            n.is_int = true;
            n.int = f as i64;
        }
        if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) {
            n.is_uint = true;
        }
    }
    if !n.is_int && !n.is_uint && !n.is_float {
        return Err(format!(
            "illegal number syntax: {}",
            crate::gofmt::quote(text)
        ));
    }
    Ok(n)
}

/// `strconv.ParseFloat(text, 64)`: decimal and hexadecimal (`0x1p60`) forms,
/// with Go's underscores between digits.
pub(super) fn parse_go_float(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let (neg, body) = match lower.as_bytes().first() {
        Some(b'-') => (true, &lower[1..]),
        Some(b'+') => (false, &lower[1..]),
        _ => (false, lower.as_str()),
    };
    if body.contains("inf") || body.contains("nan") {
        return None;
    }
    let f = if let Some(hex) = body.strip_prefix("0x") {
        parse_hex_float(hex)?
    } else {
        if body.contains('_') {
            // underscores only between digits of a base-prefixed literal
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -f } else { f })
}

/// The part after `0x` of a Go hexadecimal float: mantissa digits with an
/// optional point, then a mandatory binary exponent `p±N`.
fn parse_hex_float(s: &str) -> Option<f64> {
    let s: String = if s.contains('_') {
        if s.starts_with('.')
            || s.ends_with('_')
            || s.contains("__")
            || s.contains("_.")
            || s.contains("._")
            || s.contains("_p")
        {
            return None;
        }
        s.chars().filter(|c| *c != '_').collect()
    } else {
        s.to_string()
    };
    let (mant, exp) = s.split_once('p')?;
    let exp: i32 = exp.parse().ok()?;
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    if digits.len() > 32 || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let m = u128::from_str_radix(&digits, 16).ok()?;
    let e = exp.checked_sub(4 * frac.len() as i32)?;
    let f = m as f64 * 2f64.powi(e);
    f.is_finite().then_some(f)
}
