//! Lexer and parser for Go's text/template syntax, ported from Go 1.19's
//! `text/template/parse` so that trees and error messages match Go's.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum It {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    Str,
    Text,
    Variable,
    // keywords
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl It {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            It::Block
                | It::Break
                | It::Continue
                | It::Dot
                | It::Define
                | It::Else
                | It::End
                | It::If
                | It::Nil
                | It::Range
                | It::Template
                | It::With
        )
    }
}

#[derive(Clone, Debug)]
struct Item {
    typ: It,
    pos: usize,
    val: String,
    line: usize,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.typ {
            It::Eof => f.write_str("EOF"),
            It::Error => f.write_str(&self.val),
            t if t.is_keyword() => write!(f, "<{}>", self.val),
            _ => {
                if self.val.chars().count() > 10 {
                    let s: String = self.val.chars().take(10).collect();
                    write!(f, "{}...", crate::gofmt::quote(&s))
                } else {
                    f.write_str(&crate::gofmt::quote(&self.val))
                }
            }
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}
fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}
fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}
fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}
fn go_u(c: char) -> String {
    format!("U+{:04X} '{}'", c as u32, c)
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    at_eof: bool,
    items: Vec<Item>,
    paren_depth: i32,
    line: usize,
    start_line: usize,
    break_ok: bool,
    continue_ok: bool,
}

const LD: &str = "{{";
const RD: &str = "}}";

#[derive(Clone, Copy)]
enum St {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    Inside,
    Space,
    Ident,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
}

impl Lexer<'_> {
    fn next(&mut self) -> Option<char> {
        if self.pos >= self.input.len() {
            self.at_eof = true;
            return None;
        }
        let c = self.input[self.pos..].chars().next()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }
    fn backup(&mut self) {
        if !self.at_eof
            && self.pos > 0
            && let Some(c) = self.input[..self.pos].chars().next_back()
        {
            self.pos -= c.len_utf8();
            if c == '\n' {
                self.line -= 1;
            }
        }
    }
    fn peek(&mut self) -> Option<char> {
        let c = self.next();
        self.backup();
        c
    }
    fn emit(&mut self, t: It) {
        self.items.push(Item {
            typ: t,
            pos: self.start,
            val: self.input[self.start..self.pos].to_string(),
            line: self.start_line,
        });
        self.start = self.pos;
        self.start_line = self.line;
    }
    fn ignore(&mut self) {
        self.line += self.input[self.start..self.pos].matches('\n').count();
        self.start = self.pos;
        self.start_line = self.line;
    }
    fn accept(&mut self, valid: &str) -> bool {
        match self.next() {
            Some(c) if valid.contains(c) => true,
            _ => {
                self.backup();
                false
            }
        }
    }
    fn accept_run(&mut self, valid: &str) {
        while let Some(c) = self.next() {
            if !valid.contains(c) {
                break;
            }
        }
        self.backup();
    }
    fn errorf(&mut self, msg: String) -> Option<St> {
        self.items.push(Item {
            typ: It::Error,
            pos: self.start,
            val: msg,
            line: self.start_line,
        });
        None
    }
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = &self.input[self.pos..];
        if has_right_trim(rest) && rest[2..].starts_with(RD) {
            return (true, true);
        }
        (rest.starts_with(RD), false)
    }
    fn at_terminator(&mut self) -> bool {
        match self.peek() {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            _ => self.input[self.pos..].starts_with(RD),
        }
    }

    fn run(&mut self) {
        let mut st = Some(St::Text);
        while let Some(s) = st {
            st = self.step(s);
        }
    }

    fn step(&mut self, s: St) -> Option<St> {
        match s {
            St::Text => {
                if let Some(x) = self.input[self.pos..].find(LD) {
                    self.pos += x;
                    let mut trim = 0;
                    if has_left_trim(&self.input[self.pos + LD.len()..]) {
                        let t = &self.input[self.start..self.pos];
                        trim = t.len() - t.trim_end_matches(is_space).len();
                    }
                    self.pos -= trim;
                    if self.pos > self.start {
                        self.line += self.input[self.start..self.pos].matches('\n').count();
                        self.emit(It::Text);
                    }
                    self.pos += trim;
                    self.ignore();
                    return Some(St::LeftDelim);
                }
                self.pos = self.input.len();
                if self.pos > self.start {
                    self.line += self.input[self.start..self.pos].matches('\n').count();
                    self.emit(It::Text);
                }
                self.emit(It::Eof);
                None
            }
            St::LeftDelim => {
                self.pos += LD.len();
                let trim = has_left_trim(&self.input[self.pos..]);
                let after = if trim { 2 } else { 0 };
                if self.input[self.pos + after..].starts_with("/*") {
                    self.pos += after;
                    self.ignore();
                    return Some(St::Comment);
                }
                self.emit(It::LeftDelim);
                self.pos += after;
                self.ignore();
                self.paren_depth = 0;
                Some(St::Inside)
            }
            St::Comment => {
                self.pos += 2;
                let Some(i) = self.input[self.pos..].find("*/") else {
                    return self.errorf("unclosed comment".into());
                };
                self.pos += i + 2;
                let (delim, trim) = self.at_right_delim();
                if !delim {
                    return self.errorf("comment ends before closing delimiter".into());
                }
                if trim {
                    self.pos += 2;
                }
                self.pos += RD.len();
                if trim {
                    let t = &self.input[self.pos..];
                    self.pos += t.len() - t.trim_start_matches(is_space).len();
                }
                self.ignore();
                Some(St::Text)
            }
            St::RightDelim => {
                let trim = has_right_trim(&self.input[self.pos..]);
                if trim {
                    self.pos += 2;
                    self.ignore();
                }
                self.pos += RD.len();
                self.emit(It::RightDelim);
                if trim {
                    let t = &self.input[self.pos..];
                    self.pos += t.len() - t.trim_start_matches(is_space).len();
                    self.ignore();
                }
                Some(St::Text)
            }
            St::Inside => {
                let (delim, _) = self.at_right_delim();
                if delim {
                    if self.paren_depth == 0 {
                        return Some(St::RightDelim);
                    }
                    return self.errorf("unclosed left paren".into());
                }
                let Some(r) = self.next() else {
                    return self.errorf("unclosed action".into());
                };
                match r {
                    c if is_space(c) => {
                        self.backup();
                        return Some(St::Space);
                    }
                    '=' => self.emit(It::Assign),
                    ':' => {
                        if self.next() != Some('=') {
                            return self.errorf("expected :=".into());
                        }
                        self.emit(It::Declare);
                    }
                    '|' => self.emit(It::Pipe),
                    '"' => return Some(St::Quote),
                    '`' => return Some(St::RawQuote),
                    '$' => return Some(St::Variable),
                    '\'' => return Some(St::Char),
                    '.' => {
                        let b = self.input.as_bytes();
                        if self.pos < b.len() && !b[self.pos].is_ascii_digit() {
                            return Some(St::Field);
                        }
                        self.backup();
                        return Some(St::Number);
                    }
                    '+' | '-' | '0'..='9' => {
                        self.backup();
                        return Some(St::Number);
                    }
                    c if is_alnum(c) => {
                        self.backup();
                        return Some(St::Ident);
                    }
                    '(' => {
                        self.emit(It::LeftParen);
                        self.paren_depth += 1;
                    }
                    ')' => {
                        self.emit(It::RightParen);
                        self.paren_depth -= 1;
                        if self.paren_depth < 0 {
                            return self.errorf(format!("unexpected right paren {}", go_u(r)));
                        }
                    }
                    c if c.is_ascii() && !c.is_ascii_control() => self.emit(It::Char),
                    c => {
                        return self
                            .errorf(format!("unrecognized character in action: {}", go_u(c)));
                    }
                }
                Some(St::Inside)
            }
            St::Space => {
                let mut n = 0;
                while let Some(c) = self.peek() {
                    if !is_space(c) {
                        break;
                    }
                    self.next();
                    n += 1;
                }
                let rest = &self.input[self.pos - 1..];
                if has_right_trim(rest) && rest[2..].starts_with(RD) {
                    self.backup();
                    if n == 1 {
                        return Some(St::RightDelim);
                    }
                }
                self.emit(It::Space);
                Some(St::Inside)
            }
            St::Ident => {
                loop {
                    match self.next() {
                        Some(c) if is_alnum(c) => {}
                        r => {
                            self.backup();
                            let word = self.input[self.start..self.pos].to_string();
                            if !self.at_terminator() {
                                return self.errorf(format!(
                                    "bad character {}",
                                    r.map_or("U+FFFFFFFFFFFFFFFF".into(), go_u)
                                ));
                            }
                            let kw = match word.as_str() {
                                "block" => Some(It::Block),
                                "break" => Some(It::Break),
                                "continue" => Some(It::Continue),
                                "define" => Some(It::Define),
                                "else" => Some(It::Else),
                                "end" => Some(It::End),
                                "if" => Some(It::If),
                                "range" => Some(It::Range),
                                "nil" => Some(It::Nil),
                                "template" => Some(It::Template),
                                "with" => Some(It::With),
                                _ => None,
                            };
                            match kw {
                                Some(It::Break) if !self.break_ok => self.emit(It::Identifier),
                                Some(It::Continue) if !self.continue_ok => {
                                    self.emit(It::Identifier);
                                }
                                Some(k) => self.emit(k),
                                None if word == "true" || word == "false" => self.emit(It::Bool),
                                None => self.emit(It::Identifier),
                            }
                            break;
                        }
                    }
                }
                Some(St::Inside)
            }
            St::Field | St::Variable => {
                let typ = if matches!(s, St::Field) {
                    It::Field
                } else {
                    It::Variable
                };
                if self.at_terminator() {
                    self.emit(if typ == It::Variable {
                        It::Variable
                    } else {
                        It::Dot
                    });
                    return Some(St::Inside);
                }
                let mut r;
                loop {
                    r = self.next();
                    match r {
                        Some(c) if is_alnum(c) => {}
                        _ => {
                            self.backup();
                            break;
                        }
                    }
                }
                if !self.at_terminator() {
                    return self.errorf(format!(
                        "bad character {}",
                        r.map_or("U+FFFFFFFFFFFFFFFF".into(), go_u)
                    ));
                }
                self.emit(typ);
                Some(St::Inside)
            }
            St::Char => {
                loop {
                    match self.next() {
                        Some('\\') => match self.next() {
                            Some(c) if c != '\n' => {}
                            _ => return self.errorf("unterminated character constant".into()),
                        },
                        None | Some('\n') => {
                            return self.errorf("unterminated character constant".into());
                        }
                        Some('\'') => break,
                        _ => {}
                    }
                }
                self.emit(It::CharConstant);
                Some(St::Inside)
            }
            St::Number => {
                if !self.scan_number() {
                    let t = self.input[self.start..self.pos].to_string();
                    return self.errorf(format!("bad number syntax: {}", crate::gofmt::quote(&t)));
                }
                if let Some('+' | '-') = self.peek() {
                    if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                        let t = self.input[self.start..self.pos].to_string();
                        return self
                            .errorf(format!("bad number syntax: {}", crate::gofmt::quote(&t)));
                    }
                    self.emit(It::Complex);
                } else {
                    self.emit(It::Number);
                }
                Some(St::Inside)
            }
            St::Quote => {
                loop {
                    match self.next() {
                        Some('\\') => match self.next() {
                            Some(c) if c != '\n' => {}
                            _ => return self.errorf("unterminated quoted string".into()),
                        },
                        None | Some('\n') => {
                            return self.errorf("unterminated quoted string".into());
                        }
                        Some('"') => break,
                        _ => {}
                    }
                }
                self.emit(It::Str);
                Some(St::Inside)
            }
            St::RawQuote => {
                loop {
                    match self.next() {
                        None => return self.errorf("unterminated raw quoted string".into()),
                        Some('`') => break,
                        _ => {}
                    }
                }
                self.emit(It::RawString);
                Some(St::Inside)
            }
        }
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if let Some(c) = self.peek()
            && is_alnum(c)
        {
            self.next();
            return false;
        }
        true
    }
}

fn lex(input: &str, break_ok: bool, continue_ok: bool) -> Vec<Item> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        at_eof: false,
        items: Vec::new(),
        paren_depth: 0,
        line: 1,
        start_line: 1,
        break_ok,
        continue_ok,
    };
    l.run();
    l.items
}

// ---------------------------------------------------------------- AST

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

fn write_list(f: &mut fmt::Formatter<'_>, l: &[Node]) -> fmt::Result {
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

fn is_empty_tree(l: &[Node]) -> bool {
    l.iter().all(|n| match n {
        Node::Text { text, .. } => text
            .trim_matches(|c: char| c.is_ascii_whitespace())
            .is_empty(),
        Node::Comment => true,
        _ => false,
    })
}

/// A parse error, already formatted like Go's.
#[derive(Debug, Clone)]
pub struct ParseError(pub String);

type PResult<T> = Result<T, ParseError>;

/// Deepest nesting of `( … )` the parser accepts.
const MAX_PAREN_DEPTH: usize = 1000;

struct Parser<'a> {
    paren_depth: usize,
    items: Vec<Item>,
    idx: usize,
    token: [Item; 3],
    peek_count: usize,
    vars: Vec<String>,
    parse_name: String,
    action_line: usize,
    range_depth: usize,
    has_func: &'a dyn Fn(&str) -> bool,
    else_with: bool,
    text: Rc<str>,
    trees: Vec<Tree>,
}

fn blank_item() -> Item {
    Item {
        typ: It::Eof,
        pos: 0,
        val: String::new(),
        line: 0,
    }
}

/// Parses `text` as template `name`; returns the main tree plus every
/// `define`/`block` tree, in order. `has_func` says which functions exist.
pub fn parse(
    name: &str,
    text: &str,
    has_func: &dyn Fn(&str) -> bool,
) -> Result<Vec<Tree>, ParseError> {
    let items = lex(text, !has_func("break"), !has_func("continue"));
    let mut p = Parser {
        paren_depth: 0,
        items,
        idx: 0,
        token: [blank_item(), blank_item(), blank_item()],
        peek_count: 0,
        vars: vec!["$".into()],
        parse_name: name.to_string(),
        action_line: 0,
        range_depth: 0,
        has_func,
        else_with: true,
        text: Rc::from(text),
        trees: Vec::new(),
    };
    let root = p.parse_top()?;
    let main = Tree {
        name: name.to_string(),
        parse_name: name.to_string(),
        text: p.text.clone(),
        root,
    };
    p.add(main)?;
    Ok(p.trees)
}

fn unquote(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b'`' && b[b.len() - 1] == b'`' {
        let inner = &s[1..s.len() - 1];
        return Ok(inner.replace('\r', ""));
    }
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return Err("invalid syntax".into());
    }
    let inner = &s[1..s.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let (r, _) = unquote_escape(&mut chars, '"')?;
        out.push_str(&r);
    }
    Ok(out)
}

/// One escape after a backslash (Go's `strconv.UnquoteChar`).
fn unquote_escape(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    q: char,
) -> Result<(String, u32), String> {
    let e = chars.next().ok_or("invalid syntax")?;
    let simple = match e {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        c if c == q => Some(c),
        _ => None,
    };
    if let Some(c) = simple {
        return Ok((c.to_string(), c as u32));
    }
    let take = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
                n: usize,
                radix: u32|
     -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let c = chars.next().ok_or("invalid syntax")?;
            v = v * radix + c.to_digit(radix).ok_or("invalid syntax")?;
        }
        Ok(v)
    };
    match e {
        'x' => {
            let v = take(chars, 2, 16)?;
            // A \x byte; bytes >= 0x80 form invalid UTF-8 in Go, approximate with U+FFFD.
            let c = if v < 0x80 {
                char::from(v as u8)
            } else {
                '\u{FFFD}'
            };
            Ok((c.to_string(), v))
        }
        'u' | 'U' => {
            let v = take(chars, if e == 'u' { 4 } else { 8 }, 16)?;
            let c = char::from_u32(v).ok_or("invalid syntax")?;
            Ok((c.to_string(), v))
        }
        '0'..='7' => {
            let mut v = e.to_digit(8).unwrap_or(0);
            v = v * 64 + take(chars, 2, 8)?;
            if v > 255 {
                return Err("invalid syntax".into());
            }
            let c = if v < 0x80 {
                char::from(v as u8)
            } else {
                '\u{FFFD}'
            };
            Ok((c.to_string(), v))
        }
        _ => Err("invalid syntax".into()),
    }
}

fn parse_go_int(text: &str) -> Option<(i64, bool)> {
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

fn parse_go_uint(text: &str) -> Option<u64> {
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

fn new_number(text: &str, typ: It) -> Result<Number, String> {
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

fn parse_go_float(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if body.starts_with("0x") || body.contains("inf") || body.contains("nan") {
        // hex floats are rare in templates; treat as a syntax error
        return None;
    }
    if lower.contains('_') {
        return None;
    }
    lower.parse::<f64>().ok()
}

impl Parser<'_> {
    fn next_raw(&mut self) -> Item {
        let it = self.items.get(self.idx).cloned().unwrap_or_else(|| Item {
            typ: It::Eof,
            pos: self.text.len(),
            val: String::new(),
            line: 0,
        });
        if self.idx < self.items.len() {
            self.idx += 1;
        }
        it
    }
    fn next(&mut self) -> Item {
        if self.peek_count > 0 {
            self.peek_count -= 1;
        } else {
            self.token[0] = self.next_raw();
        }
        self.token[self.peek_count].clone()
    }
    fn backup(&mut self) {
        self.peek_count += 1;
    }
    fn backup2(&mut self, t1: Item) {
        self.token[1] = t1;
        self.peek_count = 2;
    }
    fn backup3(&mut self, t2: Item, t1: Item) {
        self.token[1] = t1;
        self.token[2] = t2;
        self.peek_count = 3;
    }
    fn peek(&mut self) -> Item {
        if self.peek_count > 0 {
            return self.token[self.peek_count - 1].clone();
        }
        self.peek_count = 1;
        self.token[0] = self.next_raw();
        self.token[0].clone()
    }
    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.typ != It::Space {
                return t;
            }
        }
    }
    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }
    fn errorf<T>(&self, msg: impl fmt::Display) -> PResult<T> {
        Err(ParseError(format!(
            "template: {}:{}: {}",
            self.parse_name, self.token[0].line, msg
        )))
    }
    fn expect(&mut self, t: It, ctx: &str) -> PResult<Item> {
        let tok = self.next_non_space();
        if tok.typ != t {
            return self.unexpected(&tok, ctx);
        }
        Ok(tok)
    }
    fn unexpected<T>(&self, tok: &Item, ctx: &str) -> PResult<T> {
        if tok.typ == It::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != tok.line {
                extra = format!(
                    " in action started at {}:{}",
                    self.parse_name, self.action_line
                );
                if tok.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.errorf(format!("{tok}{extra}"));
        }
        self.errorf(format!("unexpected {tok} in {ctx}"))
    }

    fn add(&mut self, t: Tree) -> PResult<()> {
        if let Some(i) = self.trees.iter().position(|x| x.name == t.name) {
            if self.trees[i].is_empty() {
                self.trees[i] = t;
                return Ok(());
            }
            if !t.is_empty() {
                return self.errorf(format!(
                    "template: multiple definition of template {}",
                    crate::gofmt::quote(&t.name)
                ));
            }
            return Ok(());
        }
        self.trees.push(t);
        Ok(())
    }

    fn parse_top(&mut self) -> PResult<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek().typ != It::Eof {
            if self.peek().typ == It::LeftDelim {
                let delim = self.next();
                if self.next_non_space().typ == It::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.backup2(delim);
            }
            let n = self.text_or_action()?;
            match n {
                Parsed::End | Parsed::Else(..) => {
                    return self.errorf(format!("unexpected {}", n.describe()));
                }
                Parsed::Node(n) => root.push(n),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> PResult<()> {
        let ctx = "define clause";
        let tok = self.next_non_space();
        if tok.typ != It::Str && tok.typ != It::RawString {
            return self.unexpected(&tok, ctx);
        }
        let name = match unquote(&tok.val) {
            Ok(n) => n,
            Err(e) => return self.errorf(e),
        };
        self.expect(It::RightDelim, ctx)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        if !matches!(end, Parsed::End) {
            return self.errorf(format!("unexpected {} in {ctx}", end.describe()));
        }
        let t = Tree {
            name,
            parse_name: self.parse_name.clone(),
            text: self.text.clone(),
            root: list,
        };
        self.add(t)
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Parsed)> {
        let mut list = Vec::new();
        while self.peek_non_space().typ != It::Eof {
            let n = self.text_or_action()?;
            match n {
                Parsed::End | Parsed::Else(..) => return Ok((list, n)),
                Parsed::Node(n) => list.push(n),
            }
        }
        self.errorf("unexpected EOF")
    }

    fn text_or_action(&mut self) -> PResult<Parsed> {
        let tok = self.next_non_space();
        match tok.typ {
            It::Text => Ok(Parsed::Node(Node::Text {
                pos: tok.pos,
                text: tok.val,
            })),
            It::LeftDelim => {
                self.action_line = tok.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => self.unexpected(&tok, "input"),
        }
    }

    fn action(&mut self) -> PResult<Parsed> {
        let tok = self.next_non_space();
        match tok.typ {
            It::Block => return self.block_control().map(Parsed::Node),
            It::Break | It::Continue => {
                let ctx = if tok.typ == It::Break {
                    "{{break}}"
                } else {
                    "{{continue}}"
                };
                let t = self.next_non_space();
                if t.typ != It::RightDelim {
                    return self.unexpected(&t, ctx);
                }
                if self.range_depth == 0 {
                    return self.errorf(format!("{ctx} outside {{{{range}}}}"));
                }
                return Ok(Parsed::Node(if tok.typ == It::Break {
                    Node::Break { pos: tok.pos }
                } else {
                    Node::Continue { pos: tok.pos }
                }));
            }
            It::Else => {
                let peek = self.peek_non_space();
                if peek.typ == It::If || (self.else_with && peek.typ == It::With) {
                    return Ok(Parsed::Else(peek.pos, Some(peek.typ)));
                }
                let t = self.expect(It::RightDelim, "else")?;
                return Ok(Parsed::Else(t.pos, None));
            }
            It::End => {
                self.expect(It::RightDelim, "end")?;
                return Ok(Parsed::End);
            }
            It::If => return self.control("if").map(|c| Parsed::Node(Node::If(c))),
            It::Range => return self.control("range").map(|c| Parsed::Node(Node::Range(c))),
            It::With => return self.control("with").map(|c| Parsed::Node(Node::With(c))),
            It::Template => return self.template_control().map(Parsed::Node),
            _ => {}
        }
        self.backup();
        let tok = self.peek();
        let pipe = self.pipeline("command", It::RightDelim)?;
        Ok(Parsed::Node(Node::Action { pos: tok.pos, pipe }))
    }

    fn control(&mut self, ctx: &str) -> PResult<Control> {
        let nvars = self.vars.len();
        let r = stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.control_inner(ctx));
        self.vars.truncate(nvars);
        r
    }

    fn control_inner(&mut self, ctx: &str) -> PResult<Control> {
        let pipe = self.pipeline(ctx, It::RightDelim)?;
        if ctx == "range" {
            self.range_depth += 1;
        }
        let r = self.item_list();
        if ctx == "range" {
            self.range_depth -= 1;
        }
        let (list, next) = r?;
        let mut else_list = None;
        if let Parsed::Else(pos, kw) = next {
            let chained = match kw {
                Some(It::If) if ctx == "if" => Some("if"),
                Some(It::With) if ctx == "with" => Some("with"),
                _ => None,
            };
            if let Some(kind) = chained {
                self.next();
                let c = self.control(kind)?;
                let _ = pos;
                else_list = Some(vec![if kind == "if" {
                    Node::If(c)
                } else {
                    Node::With(c)
                }]);
            } else {
                if kw.is_some() {
                    // `{{else if}}` in range/with, or `{{else with}}` in if/range: as Go does,
                    // the keyword is then read as the start of the else list.
                    let t = self.next_non_space();
                    return self.unexpected(&t, "input");
                }
                let (l, n2) = self.item_list()?;
                if !matches!(n2, Parsed::End) {
                    return self.errorf(format!("expected end; found {}", n2.describe()));
                }
                else_list = Some(l);
            }
        }
        Ok(Control {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    fn block_control(&mut self) -> PResult<Node> {
        let ctx = "block clause";
        let tok = self.next_non_space();
        let name = self.template_name(&tok, ctx)?;
        let pipe = self.pipeline(ctx, It::RightDelim)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let r = self.item_list();
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        let (list, end) = r?;
        if !matches!(end, Parsed::End) {
            return self.errorf(format!("unexpected {} in {ctx}", end.describe()));
        }
        self.add(Tree {
            name: name.clone(),
            parse_name: self.parse_name.clone(),
            text: self.text.clone(),
            root: list,
        })?;
        Ok(Node::Template {
            pos: tok.pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn template_control(&mut self) -> PResult<Node> {
        let ctx = "template clause";
        let tok = self.next_non_space();
        let name = self.template_name(&tok, ctx)?;
        let mut pipe = None;
        if self.next_non_space().typ != It::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(ctx, It::RightDelim)?);
        }
        Ok(Node::Template {
            pos: tok.pos,
            name,
            pipe,
        })
    }

    fn template_name(&self, tok: &Item, ctx: &str) -> PResult<String> {
        match tok.typ {
            It::Str | It::RawString => match unquote(&tok.val) {
                Ok(s) => Ok(s),
                Err(e) => self.errorf(e),
            },
            _ => self.unexpected(tok, ctx),
        }
    }

    fn pipeline(&mut self, ctx: &str, end: It) -> PResult<Pipe> {
        let tok = self.peek_non_space();
        let mut pipe = Pipe {
            pos: tok.pos,
            line: tok.line,
            is_assign: false,
            decl: Vec::new(),
            decl_pos: Vec::new(),
            cmds: Vec::new(),
        };
        loop {
            let v = self.peek_non_space();
            if v.typ != It::Variable {
                break;
            }
            self.next();
            let after = self.peek();
            let next = self.peek_non_space();
            if next.typ == It::Assign || next.typ == It::Declare {
                pipe.is_assign = next.typ == It::Assign;
                self.next_non_space();
                pipe.decl.push(v.val.clone());
                pipe.decl_pos.push(v.pos);
                self.vars.push(v.val);
            } else if next.typ == It::Char && next.val == "," {
                self.next_non_space();
                pipe.decl.push(v.val.clone());
                pipe.decl_pos.push(v.pos);
                self.vars.push(v.val);
                if ctx == "range" && pipe.decl.len() < 2 {
                    match self.peek_non_space().typ {
                        It::Variable | It::RightDelim | It::RightParen => continue,
                        _ => return self.errorf("range can only initialize variables"),
                    }
                }
                return self.errorf(format!("too many declarations in {ctx}"));
            } else if after.typ == It::Space {
                self.backup3(v, after);
            } else {
                self.backup2(v);
            }
            break;
        }
        loop {
            let tok = self.next_non_space();
            match tok.typ {
                t if t == end => {
                    if pipe.cmds.is_empty() {
                        return self.errorf(format!("missing value for {ctx}"));
                    }
                    for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
                        if matches!(
                            c.args[0],
                            Arg::Bool { .. }
                                | Arg::Dot { .. }
                                | Arg::Nil { .. }
                                | Arg::Number { .. }
                                | Arg::Str { .. }
                        ) {
                            return self.errorf(format!(
                                "non executable command in pipeline stage {}",
                                i + 1
                            ));
                        }
                    }
                    return Ok(pipe);
                }
                It::Bool
                | It::CharConstant
                | It::Complex
                | It::Dot
                | It::Field
                | It::Identifier
                | It::Number
                | It::Nil
                | It::RawString
                | It::Str
                | It::Variable
                | It::LeftParen => {
                    self.backup();
                    let c = self.command()?;
                    pipe.cmds.push(c);
                }
                _ => return self.unexpected(&tok, ctx),
            }
        }
    }

    fn command(&mut self) -> PResult<Command> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Command {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let tok = self.next();
            match tok.typ {
                It::Space => continue,
                It::RightDelim | It::RightParen => self.backup(),
                It::Pipe => {}
                _ => return self.unexpected(&tok, "operand"),
            }
            break;
        }
        if cmd.args.is_empty() {
            return self.errorf("empty command");
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().typ == It::Field {
            let pos = self.peek().pos;
            let mut fields = Vec::new();
            while self.peek().typ == It::Field {
                fields.push(self.next().val[1..].to_string());
            }
            return match node {
                Arg::Field { mut ident, .. } => {
                    ident.extend(fields);
                    Ok(Some(Arg::Field { pos, ident }))
                }
                Arg::Variable { mut ident, .. } => {
                    ident.extend(fields);
                    Ok(Some(Arg::Variable { pos, ident }))
                }
                Arg::Bool { .. }
                | Arg::Str { .. }
                | Arg::Number { .. }
                | Arg::Nil { .. }
                | Arg::Dot { .. } => self.errorf(format!(
                    "unexpected . after term {}",
                    crate::gofmt::quote(&node.to_string())
                )),
                other => Ok(Some(Arg::Chain {
                    pos,
                    node: Box::new(other),
                    fields,
                })),
            };
        }
        Ok(Some(node))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let tok = self.next_non_space();
        let a = match tok.typ {
            It::Identifier => {
                if !(self.has_func)(&tok.val) {
                    return self.errorf(format!(
                        "function {} not defined",
                        crate::gofmt::quote(&tok.val)
                    ));
                }
                Arg::Identifier {
                    pos: tok.pos,
                    name: tok.val,
                }
            }
            It::Dot => Arg::Dot { pos: tok.pos },
            It::Nil => Arg::Nil { pos: tok.pos },
            It::Variable => {
                let ident: Vec<String> = tok.val.split('.').map(str::to_string).collect();
                if !self.vars.iter().any(|v| *v == ident[0]) {
                    return self.errorf(format!(
                        "undefined variable {}",
                        crate::gofmt::quote(&ident[0])
                    ));
                }
                Arg::Variable {
                    pos: tok.pos,
                    ident,
                }
            }
            It::Field => Arg::Field {
                pos: tok.pos,
                ident: tok.val[1..].split('.').map(str::to_string).collect(),
            },
            It::Bool => Arg::Bool {
                pos: tok.pos,
                val: tok.val == "true",
            },
            It::CharConstant | It::Complex | It::Number => match new_number(&tok.val, tok.typ) {
                Ok(num) => Arg::Number { pos: tok.pos, num },
                Err(e) => return self.errorf(e),
            },
            It::LeftParen => {
                // Go has no limit; deeper trees would overflow the stack when
                // dropped, so keel stops at a depth no real template reaches.
                if self.paren_depth >= MAX_PAREN_DEPTH {
                    return self.errorf(format!(
                        "parenthesized pipelines nested deeper than {MAX_PAREN_DEPTH}"
                    ));
                }
                self.paren_depth += 1;
                let p = stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
                    self.pipeline("parenthesized pipeline", It::RightParen)
                });
                self.paren_depth -= 1;
                let p = p?;
                Arg::Pipe(Box::new(p))
            }
            It::Str | It::RawString => match unquote(&tok.val) {
                Ok(text) => Arg::Str {
                    pos: tok.pos,
                    quoted: tok.val,
                    text,
                },
                Err(e) => return self.errorf(e),
            },
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(a))
    }
}

enum Parsed {
    Node(Node),
    End,
    Else(usize, Option<It>),
}

impl Parsed {
    fn describe(&self) -> String {
        match self {
            Parsed::End => "{{end}}".into(),
            Parsed::Else(..) => "{{else}}".into(),
            Parsed::Node(n) => n.to_string(),
        }
    }
}

/// Trees of one template set, by name.
pub type TreeSet = HashMap<String, Rc<Tree>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Vec<Tree>, ParseError> {
        parse("t", s, &|n| n == "printf" || n == "len")
    }

    #[test]
    fn errors_like_go() {
        assert_eq!(p("{{.a").unwrap_err().0, "template: t:1: unclosed action");
        assert_eq!(
            p("{{foo}}").unwrap_err().0,
            "template: t:1: function \"foo\" not defined"
        );
        assert_eq!(
            p("{{if .a}}").unwrap_err().0,
            "template: t:1: unexpected EOF"
        );
        assert_eq!(
            p("{{end}}").unwrap_err().0,
            "template: t:1: unexpected {{end}}"
        );
        assert_eq!(
            p("a\n{{$x}}").unwrap_err().0,
            "template: t:2: undefined variable \"$x\""
        );
        assert_eq!(
            p("{{break}}").unwrap_err().0,
            "template: t:1: {{break}} outside {{range}}"
        );
        assert!(p("{{define \"x\"}}a{{end}}{{template \"x\" .}}").is_ok());
    }
}
