//! The lexer of Go's `text/template/parse` (lex.go): items, the state
//! machine over `{{ }}` actions, trim markers and comments.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum It {
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
pub(super) struct Item {
    pub(super) typ: It,
    pub(super) pos: usize,
    pub(super) val: String,
    pub(super) line: usize,
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

pub(super) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}
pub(super) fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}
pub(super) fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}
pub(super) fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}
pub(super) fn go_u(c: char) -> String {
    format!("U+{:04X} '{}'", c as u32, c)
}

pub(super) struct Lexer<'a> {
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

pub(super) const LD: &str = "{{";
pub(super) const RD: &str = "}}";

#[derive(Clone, Copy)]
pub(super) enum St {
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

pub(super) fn lex(input: &str, break_ok: bool, continue_ok: bool) -> Vec<Item> {
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
