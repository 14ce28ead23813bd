//! Tokens of `${{ }}` expressions, with GitHub's lexing rules (numbers and
//! identifiers run to the next boundary character; `'` strings double `''`).

use super::ExprError;
use super::value::{Value, parse_js_number};

/// Longest expression GitHub accepts.
pub const MAX_EXPRESSION_LENGTH: usize = 21_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Bang,
    BangEq,
    EqEq,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
    Star,
    Number,
    String,
    Ident,
    True,
    False,
    Null,
    Eof,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub kind: Tok,
    pub lexeme: String,
    pub value: Option<Value>,
    /// 0-based column within its line (GitHub reports `column + 1`).
    pub col: usize,
}

impl Token {
    /// How errors quote the token.
    pub fn display(&self) -> String {
        match self.kind {
            Tok::Eof => "EOF".into(),
            // As written, quotes included (GitHub's C# parser: `''b''`).
            _ => self.lexeme.clone(),
        }
    }
}

fn is_boundary(c: char) -> bool {
    matches!(
        c,
        '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|'
    ) || c.is_whitespace()
}

fn is_legal_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

struct Lexer<'a> {
    src: &'a str,
    chars: Vec<char>,
    start: usize,
    offset: usize,
    line_start: usize,
    tokens: Vec<Token>,
}

pub fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    if src.len() > MAX_EXPRESSION_LENGTH {
        return Err(ExprError::Lex(format!(
            "Exceeded max expression length {MAX_EXPRESSION_LENGTH}"
        )));
    }
    let mut l = Lexer {
        src,
        chars: src.chars().collect(),
        start: 0,
        offset: 0,
        line_start: 0,
        tokens: Vec::new(),
    };
    l.run()?;
    Ok(l.tokens)
}

impl Lexer<'_> {
    fn previous(&self) -> Tok {
        self.tokens.last().map_or(Tok::Eof, |t| t.kind)
    }
    fn peek(&self) -> char {
        self.chars.get(self.offset).copied().unwrap_or('\0')
    }
    fn peek_next(&self) -> char {
        self.chars.get(self.offset + 1).copied().unwrap_or('\0')
    }
    fn at_end(&self) -> bool {
        self.offset >= self.chars.len()
    }
    fn matches(&mut self, c: char) -> bool {
        if self.peek() == c && !self.at_end() {
            self.offset += 1;
            true
        } else {
            false
        }
    }
    fn lexeme(&self) -> String {
        self.chars[self.start..self.offset].iter().collect()
    }
    fn add(&mut self, kind: Tok, value: Option<Value>) {
        let lexeme = self.lexeme();
        self.tokens.push(Token {
            kind,
            lexeme,
            value,
            col: self.start.saturating_sub(self.line_start),
        });
    }
    fn unexpected(&self, what: &str) -> ExprError {
        ExprError::Lex(format!(
            "Unexpected symbol: '{what}'. Located at position {} within expression: {}",
            self.start + 1,
            self.src
        ))
    }

    fn run(&mut self) -> Result<(), ExprError> {
        while !self.at_end() {
            self.start = self.offset;
            let c = self.chars[self.offset];
            self.offset += 1;
            match c {
                '(' => self.add(Tok::LParen, None),
                ')' => self.add(Tok::RParen, None),
                '[' => self.add(Tok::LBracket, None),
                ']' => self.add(Tok::RBracket, None),
                ',' => self.add(Tok::Comma, None),
                '.' => {
                    if matches!(
                        self.previous(),
                        Tok::Ident | Tok::RBracket | Tok::RParen | Tok::Star
                    ) {
                        self.add(Tok::Dot, None);
                    } else {
                        self.number()?;
                    }
                }
                '-' | '+' => self.number()?,
                '!' => {
                    let k = if self.matches('=') {
                        Tok::BangEq
                    } else {
                        Tok::Bang
                    };
                    self.add(k, None);
                }
                '=' => {
                    if self.matches('=') {
                        self.add(Tok::EqEq, None);
                    } else {
                        self.identifier()?;
                    }
                }
                '<' => {
                    let k = if self.matches('=') { Tok::Le } else { Tok::Lt };
                    self.add(k, None);
                }
                '>' => {
                    let k = if self.matches('=') { Tok::Ge } else { Tok::Gt };
                    self.add(k, None);
                }
                '&' => {
                    if self.matches('&') {
                        self.add(Tok::And, None);
                    } else {
                        self.identifier()?;
                    }
                }
                '|' => {
                    if self.matches('|') {
                        self.add(Tok::Or, None);
                    } else {
                        self.identifier()?;
                    }
                }
                '*' => self.add(Tok::Star, None),
                // Positions count from the expression's start across lines, as
                // GitHub's runner (C#) reports them.
                ' ' | '\r' | '\t' | '\n' => {}
                '\'' => self.string()?,
                c if c.is_ascii_digit() => self.number()?,
                _ => self.identifier()?,
            }
        }
        self.start = self.offset;
        self.add(Tok::Eof, None);
        Ok(())
    }

    fn number(&mut self) -> Result<(), ExprError> {
        while !self.at_end() && (!is_boundary(self.peek()) || self.peek() == '.') {
            self.offset += 1;
        }
        let lexeme = self.lexeme();
        let v = parse_js_number(&lexeme);
        if v.is_nan() {
            return Err(self.unexpected(&lexeme));
        }
        self.add(Tok::Number, Some(Value::Number(v)));
        Ok(())
    }

    fn string(&mut self) -> Result<(), ExprError> {
        while (self.peek() != '\'' || self.peek_next() == '\'') && !self.at_end() {
            if self.peek() == '\'' && self.peek_next() == '\'' {
                self.offset += 1;
            }
            self.offset += 1;
        }
        if self.at_end() {
            let rest: String = self.chars[self.start..].iter().collect();
            return Err(self.unexpected(&rest));
        }
        self.offset += 1;
        let inner: String = self.chars[self.start + 1..self.offset - 1].iter().collect();
        // GitHub's TypeScript replaces only the first doubled quote; the C#
        // runner (the reference) unescapes all of them.
        let value = inner.replace("''", "'");
        self.add(Tok::String, Some(Value::String(value)));
        Ok(())
    }

    fn identifier(&mut self) -> Result<(), ExprError> {
        while !self.at_end() && !is_boundary(self.peek()) {
            self.offset += 1;
        }
        let lexeme = self.lexeme();
        let mut kind = Tok::Ident;
        let mut value = None;
        if self.previous() != Tok::Dot {
            match lexeme.as_str() {
                "true" => kind = Tok::True,
                "false" => kind = Tok::False,
                "null" => kind = Tok::Null,
                "NaN" => {
                    kind = Tok::Number;
                    value = Some(Value::Number(f64::NAN));
                }
                "Infinity" => {
                    kind = Tok::Number;
                    value = Some(Value::Number(f64::INFINITY));
                }
                _ => {}
            }
        }
        if !is_legal_identifier(&lexeme) {
            return Err(self.unexpected(&lexeme));
        }
        self.add(kind, value);
        Ok(())
    }
}
