//! Lexer and parser for Go's text/template syntax, ported from Go 1.19's
//! `text/template/parse` so that trees and error messages match Go's; laid
//! out as Go's package is: `lex` (lex.go), `node` (node.go) and the parser
//! here (parse.go).

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

mod lex;
mod node;

use lex::{It, Item, lex};
use node::new_number;
pub use node::{Arg, Command, Control, Node, Number, Pipe, Tree};

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
